use roller_prover::circuits::*;
use plonky2::plonk::circuit_builder::CircuitBuilder;
use plonky2::plonk::circuit_data::CircuitConfig;
use plonky2::iop::target::Target;
use plonky2::hash::poseidon::PoseidonHash;
fn chunk(cap: usize, cfg: CircuitConfig) -> Data {
    let mut b = CircuitBuilder::<F, D>::new(cfg);
    let bytes: Vec<Target> = (0..cap).map(|_| { let t = b.add_virtual_target(); b.range_check(t, 8); t }).collect();
    let h = b.hash_n_to_hash_no_pad::<PoseidonHash>(bytes);
    b.register_public_inputs(&h.elements);
    for _ in 0..43 { let t = b.add_virtual_target(); b.register_public_input(t); }
    b.build::<C>()
}
fn main() {
    for ch in [4usize, 6, 8] {
        for j in [0usize, 5] {
            let mut cfg = config();
            cfg.fri_config.cap_height = ch;
            let d = chunk(768 << j, cfg);
            let w = wrap_builder(&d.common, &d.verifier_only);
            println!("cap {ch} bucket {j} deg {} wrap gates {}", d.common.degree_bits(), w.builder.num_gates());
        }
    }
}
