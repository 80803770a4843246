//! C entry points, all with one error convention (`guarded`): every call catches unwinds and
//! clears the calling thread's last error; a failing call returns its failure value (init_*:
//! non-zero, char* results: NULL, verify_*: 0) and sets the last error, which
//! `prover_last_error()` returns.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulonglong, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::aggproof::{KIND_BATCH, KIND_BUNDLE, KIND_CHUNK};
use crate::fork::Fork;
use crate::store::Store;
use crate::sync::relock;
use crate::{panic_message, prover};

/// 2: verifiers take the task's chunk info; gen_chunk_proof and block_traces_to_chunk_info take
/// the chain id (never the environment's); block counts in chunk and batch instances.
/// 3: bundle proofs (init_bundle_prover, gen_bundle_proof, init_bundle_verifier,
/// verify_bundle_proof); one error convention: char* results are NULL on failure (no longer an
/// `{"error": ...}` object) and every failure's message is in prover_last_error().
/// 4: forks: every init, prove and verify call and block_traces_to_chunk_info take the fork name
/// (last argument); prover_forks and get_vk; proofs' `vk` is the fork's key of the proof type.
///
/// The header declares the same number (`ROLLER_PROVER_ABI_VERSION`; a test holds them together).
pub const ABI_VERSION: c_uint = 4;

/// What an init sets up (one slot per role and fork).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    ChunkProver,
    BatchProver,
    BundleProver,
    ChunkVerifier,
    BatchVerifier,
    BundleVerifier,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::ChunkProver => "chunk prover",
            Role::BatchProver => "batch prover",
            Role::BundleProver => "bundle prover",
            Role::ChunkVerifier => "chunk verifier",
            Role::BatchVerifier => "batch verifier",
            Role::BundleVerifier => "bundle verifier",
        }
    }
}

/// A store's identity: its params directory and fork.
type StoreKey = (String, Fork);

/// Stores by params directory and fork, so the provers and verifiers of a fork over one directory
/// share one.
static STORES: Mutex<Vec<(StoreKey, Arc<Store>)>> = Mutex::new(Vec::new());
/// The store each role uses, per fork: several forks can be initialised at once.
static SLOTS: RwLock<BTreeMap<(Role, Fork), Arc<Store>>> = RwLock::new(BTreeMap::new());
thread_local! {
    /// Per thread, so a verifier called from several threads at once (the devnet's verifier pool)
    /// reads the reason for its own call.
    static LAST_ERROR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}
/// Worker threads of the current process. rayon's global pool does not survive fork() (Celery
/// prefork children would hang), so each process builds its own on first use.
static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

fn pool() -> Result<Arc<rayon::ThreadPool>> {
    let mut g = relock(POOL.lock());
    let pid = std::process::id();
    if let Some((p, pool)) = g.as_ref() {
        if *p == pid {
            return Ok(pool.clone());
        }
    }
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().build()?);
    *g = Some((pid, pool.clone()));
    Ok(pool)
}

/// Runs `f` on this process's pool, so every parallel iterator inside uses live threads.
fn in_pool<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    pool()?.install(f)
}

/// Opens (or reuses) the store of a fork under a params directory.
pub fn open_store(params_dir: &str, fork: Fork) -> Result<Arc<Store>> {
    let mut stores = relock(STORES.lock());
    let key = (params_dir.to_string(), fork);
    if let Some((_, s)) = stores.iter().find(|(k, _)| *k == key) {
        return Ok(s.clone());
    }
    let s = Arc::new(Store::open(Path::new(params_dir), fork)?);
    stores.push((key, s.clone()));
    Ok(s)
}

/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives `'a`.
unsafe fn arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(anyhow!("{name} is NULL"));
    }
    // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string living for 'a.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| anyhow!("{name} is not UTF-8"))
}

/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
unsafe fn fork_arg(p: *const c_char) -> Result<Fork> {
    // SAFETY: NULL or a NUL-terminated string, per this function's contract.
    Fork::parse(unsafe { arg(p, "fork") }?)
}

/// A library-allocated copy of `s` (NUL bytes, which C strings cannot hold, escaped).
fn to_c(s: String) -> *mut c_char {
    let s = if s.contains('\0') {
        s.replace('\0', "\\0")
    } else {
        s
    };
    CString::new(s).unwrap_or_default().into_raw()
}

fn set_last_error(msg: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// The ABI's one error convention: clears the thread's last error, runs `f` catching panics, and
/// on an error or a panic records its message as the last error and returns `failed`.
fn guarded<T>(failed: T, f: impl FnOnce() -> Result<T>) -> T {
    set_last_error(String::new());
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(format!("{e:#}"));
            failed
        }
        Err(p) => {
            set_last_error(format!("prover panic: {}", panic_message(&*p)));
            failed
        }
    }
}

/// A JSON result as a library-allocated string; NULL on failure.
fn run_json(f: impl FnOnce() -> Result<String>) -> *mut c_char {
    guarded(std::ptr::null_mut(), || Ok(to_c(f()?)))
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
unsafe fn run_init(role: Role, params_dir: *const c_char, fork: *const c_char) -> c_int {
    guarded(-1, || {
        // SAFETY: NULL or NUL-terminated strings, per this function's contract.
        let dir = unsafe { arg(params_dir, "params_dir") }?;
        // SAFETY: as above.
        let fork = unsafe { fork_arg(fork) }?;
        let store = in_pool(|| open_store(dir, fork))?;
        relock(SLOTS.write()).insert((role, fork), store);
        Ok(0)
    })
}

/// The store of `role` for `fork`; an error naming the fork (and those initialised) when that
/// fork's role is not initialised.
fn current(role: Role, fork: Fork) -> Result<Arc<Store>> {
    let slots = relock(SLOTS.read());
    if let Some(s) = slots.get(&(role, fork)) {
        return Ok(s.clone());
    }
    let others: Vec<&str> = slots
        .keys()
        .filter(|(r, _)| *r == role)
        .map(|(_, f)| f.name())
        .collect();
    let what = role.name();
    if others.is_empty() {
        bail!("{what} of fork {fork} not initialised (no fork's {what} is)");
    }
    bail!(
        "{what} of fork {fork} not initialised (initialised for: {})",
        others.join(", ")
    )
}

/// # Safety
/// `proof`, `task.0` and `fork` must be NULL or NUL-terminated strings.
unsafe fn run_verify(
    role: Role,
    proof: *const c_char,
    task: (*const c_char, &str),
    fork: *const c_char,
    f: fn(&Store, &str, &str) -> Result<()>,
) -> c_char {
    guarded(0, || {
        // SAFETY: NULL or NUL-terminated strings, per this function's contract.
        let store = current(role, unsafe { fork_arg(fork) }?)?;
        // SAFETY: as above.
        let proof = unsafe { arg(proof, "proof_json") }?;
        // SAFETY: as above.
        let task = unsafe { arg(task.0, task.1) }?;
        in_pool(|| f(&store, proof, task))?;
        Ok(1)
    })
}

#[cfg(feature = "fault-injection")]
fn inject_fault() {
    extern "C" {
        fn raise(sig: c_int) -> c_int;
    }
    match std::env::var("ROLLER_PROVER_FAULT").as_deref() {
        Ok("abort") => std::process::abort(),
        // SAFETY: raise is async-signal-safe libc; SIGSEGV (11) kills the process as a crash would.
        Ok("segv") => unsafe {
            raise(11);
        },
        Ok("panic") => panic!("injected prover panic"),
        _ => {}
    }
}

/// ROLLER_PROVER_FAULT=other-blocks: a dishonest roller proving all but the task's last block (a
/// valid proof of other blocks, the prefix the old overflow rule produced); verifiers must refuse.
#[cfg(feature = "fault-injection")]
fn other_blocks_fault(traces: &str) -> Result<String> {
    if std::env::var("ROLLER_PROVER_FAULT").as_deref() != Ok("other-blocks") {
        return Ok(traces.to_string());
    }
    let mut blocks: Vec<serde_json::Value> = serde_json::from_str(traces)?;
    if blocks.len() > 1 {
        blocks.pop();
    }
    Ok(serde_json::to_string(&blocks)?)
}

/// ROLLER_PROVER_FAULT=corrupt|corrupt-once: a GPU's silent data corruption. One bit of the
/// returned proof's bytes is flipped (in the middle of the frame: plonky2 proof data, never the
/// header or the zero padding), so the proof keeps its shape and its instance but no longer
/// verifies; `corrupt` does it to every proof (chunk, batch, bundle), `corrupt-once` to the
/// first proof of the process only (its retry verifies). What the worker's own check before
/// storing (roller.worker.job) must catch: such a proof is never submitted.
#[cfg(feature = "fault-injection")]
fn corrupt_fault(proof_json: String) -> Result<String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static CORRUPTED: AtomicBool = AtomicBool::new(false);
    match std::env::var("ROLLER_PROVER_FAULT").as_deref() {
        Ok("corrupt") => {}
        Ok("corrupt-once") if !CORRUPTED.swap(true, Ordering::SeqCst) => {}
        _ => return Ok(proof_json),
    }
    let mut p = crate::aggproof::AggBytes::from_json(&proof_json)?;
    let at = p.proof.len() / 2;
    let byte = p
        .proof
        .get_mut(at)
        .ok_or_else(|| anyhow!("corrupt fault: empty proof bytes"))?;
    *byte ^= 0x01;
    Ok(p.to_json())
}

/// The prover's result as the caller gets it: corrupted under the `corrupt` faults.
#[cfg(feature = "fault-injection")]
fn returned(proof_json: Result<String>) -> Result<String> {
    proof_json.and_then(corrupt_fault)
}

/// The prover's result as the caller gets it (the default build injects no fault).
#[cfg(not(feature = "fault-injection"))]
fn returned(proof_json: Result<String>) -> Result<String> {
    proof_json
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_chunk_prover(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::ChunkProver, params_dir, fork) }
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_batch_prover(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::BatchProver, params_dir, fork) }
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_chunk_verifier(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::ChunkVerifier, params_dir, fork) }
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_batch_verifier(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::BatchVerifier, params_dir, fork) }
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_bundle_prover(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::BundleProver, params_dir, fork) }
}

/// # Safety
/// `params_dir` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn init_bundle_verifier(
    params_dir: *const c_char,
    fork: *const c_char,
) -> c_int {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe { run_init(Role::BundleVerifier, params_dir, fork) }
}

/// 0 means "not given".
fn given(chain_id: c_ulonglong) -> Option<u64> {
    (chain_id != 0).then_some(chain_id)
}

/// # Safety
/// `traces_json` and `fork` must be NULL or NUL-terminated strings; free the result with
/// `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn gen_chunk_proof(
    traces_json: *const c_char,
    chain_id: c_ulonglong,
    fork: *const c_char,
) -> *mut c_char {
    run_json(|| {
        #[cfg(feature = "fault-injection")]
        inject_fault();
        // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
        let store = current(Role::ChunkProver, unsafe { fork_arg(fork) }?)?;
        // SAFETY: as above.
        let traces = unsafe { arg(traces_json, "traces_json") }?;
        #[cfg(feature = "fault-injection")]
        let traces = &other_blocks_fault(traces)?;
        returned(in_pool(|| {
            prover::gen_chunk_proof(&store, traces, given(chain_id))
        }))
    })
}

/// # Safety
/// `chunk_proofs_json` and `fork` must be NULL or NUL-terminated strings; free the result with
/// `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn gen_batch_proof(
    chunk_proofs_json: *const c_char,
    fork: *const c_char,
) -> *mut c_char {
    run_json(|| {
        // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
        let store = current(Role::BatchProver, unsafe { fork_arg(fork) }?)?;
        // SAFETY: as above.
        let proofs = unsafe { arg(chunk_proofs_json, "chunk_proofs_json") }?;
        returned(in_pool(|| prover::gen_batch_proof(&store, proofs)))
    })
}

/// # Safety
/// `batch_proofs_json` and `fork` must be NULL or NUL-terminated strings; free the result with
/// `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn gen_bundle_proof(
    batch_proofs_json: *const c_char,
    fork: *const c_char,
) -> *mut c_char {
    run_json(|| {
        // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
        let store = current(Role::BundleProver, unsafe { fork_arg(fork) }?)?;
        // SAFETY: as above.
        let proofs = unsafe { arg(batch_proofs_json, "batch_proofs_json") }?;
        returned(in_pool(|| prover::gen_bundle_proof(&store, proofs)))
    })
}

/// # Safety
/// `proof_json`, `chunk_info_json` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn verify_chunk_proof(
    proof_json: *const c_char,
    chunk_info_json: *const c_char,
    fork: *const c_char,
) -> c_char {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe {
        run_verify(
            Role::ChunkVerifier,
            proof_json,
            (chunk_info_json, "chunk_info_json"),
            fork,
            prover::verify_chunk_proof,
        )
    }
}

/// # Safety
/// `proof_json`, `chunk_infos_json` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn verify_batch_proof(
    proof_json: *const c_char,
    chunk_infos_json: *const c_char,
    fork: *const c_char,
) -> c_char {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe {
        run_verify(
            Role::BatchVerifier,
            proof_json,
            (chunk_infos_json, "chunk_infos_json"),
            fork,
            prover::verify_batch_proof,
        )
    }
}

/// # Safety
/// `proof_json`, `batch_infos_json` and `fork` must be NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn verify_bundle_proof(
    proof_json: *const c_char,
    batch_infos_json: *const c_char,
    fork: *const c_char,
) -> c_char {
    // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
    unsafe {
        run_verify(
            Role::BundleVerifier,
            proof_json,
            (batch_infos_json, "batch_infos_json"),
            fork,
            prover::verify_bundle_proof,
        )
    }
}

/// # Safety
/// `traces_json` and `fork` must be NULL or NUL-terminated strings; free the result with
/// `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn block_traces_to_chunk_info(
    traces_json: *const c_char,
    chain_id: c_ulonglong,
    l1_messages_popped_before: c_longlong,
    fork: *const c_char,
) -> *mut c_char {
    run_json(|| {
        let popped = u64::try_from(l1_messages_popped_before).ok();
        // SAFETY: the caller passes NULL or NUL-terminated strings (see # Safety).
        let fork = unsafe { fork_arg(fork) }?;
        // SAFETY: as above.
        let traces = unsafe { arg(traces_json, "traces_json") }?;
        prover::chunk_info_json(traces, given(chain_id), popped, fork)
    })
}

/// JSON array of the forks this library knows (canonical names, chain order); free with
/// `free_c_chars`. Cannot fail (NULL only if it could not allocate).
#[no_mangle]
pub extern "C" fn prover_forks() -> *mut c_char {
    run_json(|| Ok(Fork::names_json()))
}

/// # Safety
/// `fork` must be NULL or a NUL-terminated string; free the result with `free_c_chars`.
#[no_mangle]
pub unsafe extern "C" fn get_vk(proof_type: c_uint, fork: *const c_char) -> *mut c_char {
    run_json(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string (see # Safety).
        let fork = unsafe { fork_arg(fork) }?;
        let (kind, roles) = match proof_type {
            0 => (KIND_CHUNK, [Role::ChunkProver, Role::ChunkVerifier]),
            1 => (KIND_BATCH, [Role::BatchProver, Role::BatchVerifier]),
            2 => (KIND_BUNDLE, [Role::BundleProver, Role::BundleVerifier]),
            other => bail!("unknown proof type {other} (0 chunk, 1 batch, 2 bundle)"),
        };
        let store = roles
            .iter()
            .find_map(|r| current(*r, fork).ok())
            .ok_or_else(|| {
                anyhow!(
                    "no {} key of fork {fork}: neither its {} nor its {} is initialised",
                    ["chunk", "batch", "bundle"][kind as usize],
                    roles[0].name(),
                    roles[1].name()
                )
            })?;
        Ok(STANDARD.encode(store.key(kind)?))
    })
}

/// Message of the last failed call on this thread ("" after a call that succeeded); free with
/// `free_c_chars`.
#[no_mangle]
pub extern "C" fn prover_last_error() -> *mut c_char {
    let msg = LAST_ERROR.with(|e| e.borrow().clone());
    to_c(msg)
}

/// # Safety
/// `p` must be NULL or a pointer returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn free_c_chars(p: *mut c_char) {
    if !p.is_null() {
        // SAFETY: the caller passes a pointer this library returned (CString::into_raw) and
        // has not freed yet.
        drop(unsafe { CString::from_raw(p) });
    }
}

#[no_mangle]
pub extern "C" fn prover_abi_version() -> c_uint {
    ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let p = prover_last_error();
        // SAFETY: p was just returned by this library (never NULL) and is freed once, below.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: as above.
        unsafe { free_c_chars(p) };
        s
    }

    #[test]
    fn the_header_declares_this_abi_version() {
        // The Python side takes its declarations and the version it expects from the header.
        let header = include_str!("../include/roller_prover.h");
        let line = format!("\n#define ROLLER_PROVER_ABI_VERSION {ABI_VERSION}\n");
        assert!(
            header.contains(&line),
            "the header does not declare ABI version {ABI_VERSION}"
        );
    }

    #[test]
    fn one_error_convention_failure_value_and_last_error() {
        // char* results: NULL, the message in prover_last_error().
        // SAFETY: NULL and NUL-terminated arguments are within every entry point's contract.
        let out = unsafe { gen_bundle_proof(c"[]".as_ptr(), c"bernoulli".as_ptr()) };
        assert!(out.is_null());
        assert_eq!(
            last_error(),
            "bundle prover of fork bernoulli not initialised (no fork's bundle prover is)"
        );
        // SAFETY: as above.
        let out = unsafe { block_traces_to_chunk_info(c"[".as_ptr(), 0, -1, c"curie".as_ptr()) };
        assert!(out.is_null());
        assert!(last_error().contains("JSON"), "{}", last_error());
        // verify_*: 0; init_*: non-zero.
        // SAFETY: as above.
        assert_eq!(
            unsafe { verify_bundle_proof(std::ptr::null(), c"[]".as_ptr(), c"curie".as_ptr()) },
            0
        );
        assert_eq!(
            last_error(),
            "bundle verifier of fork curie not initialised (no fork's bundle verifier is)"
        );
        // SAFETY: as above.
        assert_ne!(
            unsafe { init_bundle_verifier(std::ptr::null(), c"curie".as_ptr()) },
            0
        );
        assert_eq!(last_error(), "params_dir is NULL");
        // A fork is required and must be known; names are case-insensitive.
        // SAFETY: as above.
        assert_ne!(
            unsafe { init_bundle_verifier(c"/nonexistent".as_ptr(), std::ptr::null()) },
            0
        );
        assert_eq!(last_error(), "fork is NULL");
        // SAFETY: as above.
        let out = unsafe { get_vk(0, c"euclid".as_ptr()) };
        assert!(out.is_null());
        assert_eq!(
            last_error(),
            "unknown fork \"euclid\"; known forks: homestead, bernoulli, curie, darwin, darwinV2"
        );
        // SAFETY: as above.
        let out = unsafe { get_vk(3, c"DARWIN".as_ptr()) };
        assert!(out.is_null());
        assert_eq!(
            last_error(),
            "unknown proof type 3 (0 chunk, 1 batch, 2 bundle)"
        );
        // SAFETY: as above.
        let out = unsafe { get_vk(1, c"darwin".as_ptr()) };
        assert!(out.is_null());
        assert_eq!(
            last_error(),
            "no batch key of fork darwin: neither its batch prover nor its batch verifier is \
             initialised"
        );
        // A panic is a failure like any other; a success clears the message.
        assert_eq!(guarded(7, || -> Result<i32> { panic!("boom") }), 7);
        assert_eq!(last_error(), "prover panic: boom");
        assert_eq!(guarded(0, || Ok(1)), 1);
        assert_eq!(last_error(), "");
        // Per thread: another thread's failure is not this thread's message.
        std::thread::spawn(|| set_last_error("other".into()))
            .join()
            .unwrap_or_default();
        assert_eq!(last_error(), "");
    }

    #[test]
    fn prover_forks_lists_every_fork() {
        let p = prover_forks();
        assert!(!p.is_null());
        // SAFETY: p was just returned by this library and is freed once, below.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: as above.
        unsafe { free_c_chars(p) };
        assert_eq!(
            s,
            r#"["homestead","bernoulli","curie","darwin","darwinV2"]"#
        );
        assert_eq!(last_error(), "");
    }
}
