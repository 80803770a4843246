//! roller_prover: chunk, batch and bundle proofs (plonky2, Poseidon over Goldilocks) behind a C ABI,
//! with one set of circuits per hard fork (`fork`).
//!
//! The ABI is documented in `include/roller_prover.h`; `ffi` implements it over `prover`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod aggproof;
pub mod circuits;
pub mod ffi;
pub mod fork;
pub mod prover;
pub mod store;
pub mod sync;
pub mod trace;
pub mod txenc;

/// Text of a caught panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
