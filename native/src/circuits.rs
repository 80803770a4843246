//! The four circuit kinds: chunk (per capacity bucket), wrap (fixed shape), batch (per chunk count)
//! and bundle (per sequence of batch chunk counts).
//!
//! Every circuit is built for one fork (`Fork`): the chunk circuit hashes the fork's tag constant
//! into its commitment, so its key, the wrap keys over it, the batch circuits (which accept only
//! those wrap keys) and the bundle circuits (only those batch keys) all differ from fork to fork.
//!
//! What the chunk circuit binds (everything else a verifier must check against the task itself):
//! - chain id and the three roots in the public inputs are the first 104 committed bytes;
//! - the Poseidon commitment is over [fork tag, len, bytes, zero padding, h_0, .., h_{B-1}], every
//!   byte range-checked, h_j the number of 32-byte hashes block j contributes to the data-hash
//!   preimage (a witness of its own, 16 bits, 0 for j >= block_count);
//! - len <= capacity, and every byte at or after len is zero;
//! - block_count >= 1 and len = 104 + 58 * block_count + 32 * (h_0 + ... ) + 32 * [codec v1+] (the
//!   tx bytes hash), and h_j <= the tx count in block context j: so block_count is a function of
//!   the committed values. The hashes per block are not the contexts' tx counts: Scroll's tx
//!   count includes the L1 messages a block skips (which have no hash in the preimage), and from
//!   codec v1 on the preimage holds L1 message hashes only.
//!
//! Not bound in-circuit: data hash and pi hash are free 32-bit-limbed witnesses (no keccak here);
//! a verifier recomputes them (and the commitment) from the task's traces. EVM execution is not
//! proved at all.

use anyhow::{anyhow, bail, Result};
use plonky2::field::types::{Field, PrimeField64};
use plonky2::gates::noop::NoopGate;
use plonky2::hash::hash_types::{HashOut, HashOutTarget};
use plonky2::hash::poseidon::PoseidonHash;
use plonky2::iop::target::{BoolTarget, Target};
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use plonky2::plonk::circuit_builder::CircuitBuilder;
use plonky2::plonk::circuit_data::{
    CircuitConfig, CircuitData, CommonCircuitData, VerifierCircuitTarget, VerifierOnlyCircuitData,
};
use plonky2::plonk::config::{GenericConfig, Hasher, PoseidonGoldilocksConfig};
use plonky2::plonk::proof::{ProofWithPublicInputs, ProofWithPublicInputsTarget};

use crate::fork::Fork;
use crate::trace::{CONTEXT_HASHED_LEN, HEADER_LEN};

pub const D: usize = 2;
pub type C = PoseidonGoldilocksConfig;
pub type F = <C as GenericConfig<D>>::F;
pub type Proof = ProofWithPublicInputs<F, C, D>;
pub type Data = CircuitData<F, C, D>;
pub type Common = CommonCircuitData<F, D>;
pub type VerifierOnly = VerifierOnlyCircuitData<C, D>;

/// Capacity (bytes of commitment preimage) of the smallest chunk bucket; bucket j holds `BASE << j`.
/// About 1.1 rows per byte, so bucket j is a 2^(10+j)-row circuit.
pub const BUCKET_BASE_BYTES: usize = 768;
pub const NUM_BUCKETS: usize = 6;

/// Chunk public inputs (Goldilocks elements), in order:
/// chain id (2 u32 limbs, BE), prev root (8), post root (8), withdraw root (8), data hash (8),
/// pi hash (8) - all as big-endian u32 limbs - then the Poseidon commitment (4), the preimage
/// length (1) and the block count (1).
pub mod chunk_pi {
    pub const CHAIN_ID: usize = 0;
    pub const PREV: usize = 2;
    pub const POST: usize = 10;
    pub const WITHDRAW: usize = 18;
    pub const DATA_HASH: usize = 26;
    pub const PI_HASH: usize = 34;
    pub const COMMITMENT: usize = 42;
    pub const LEN: usize = 46;
    pub const BLOCK_COUNT: usize = 47;
    pub const COUNT: usize = 48;
}

/// Batch public inputs: chain id (2), prev root of the first chunk (8), post root of the last (8),
/// withdraw root of the last (8), Poseidon commitment over every chunk's public inputs (4),
/// chunk count (1), total block count (1, summed in-circuit), then each chunk's data hash (8 each).
pub mod batch_pi {
    // The chunk layout's head: the first 104 instance bytes are the same in every kind (`roots_of`).
    pub use super::chunk_pi::{CHAIN_ID, POST, PREV, WITHDRAW};
    pub const COMMITMENT: usize = 26;
    pub const COUNT: usize = 30;
    pub const BLOCKS: usize = 31;
    pub const DATA_HASHES: usize = 32;
    pub fn len(n: usize) -> usize {
        DATA_HASHES + 8 * n
    }
}

/// Bundle public inputs: chain id (2), prev root of the first batch (8), post root of the last (8),
/// withdraw root of the last (8), Poseidon commitment over every batch's public inputs (4), batch
/// count (1), total block count (1, summed in-circuit), then each batch's commitment (4 each).
pub mod bundle_pi {
    // The batch layout's head: both come from `bind_chain`, and the verifier reads both alike.
    pub use super::batch_pi::{BLOCKS, CHAIN_ID, COMMITMENT, COUNT, POST, PREV, WITHDRAW};
    pub const BATCH_COMMITMENTS: usize = 32;
    pub fn len(k: usize) -> usize {
        BATCH_COMMITMENTS + 4 * k
    }
}

/// Most batches one bundle proof aggregates: a bound on the circuit a task can make us build (and
/// on the cache file name); more is an error, never a proof of a prefix.
pub const MAX_BUNDLE_BATCHES: usize = 64;

pub fn bucket_capacity(bucket: usize) -> usize {
    BUCKET_BASE_BYTES << bucket
}

/// Smallest bucket whose capacity holds `len` bytes.
pub fn bucket_for(len: usize) -> Option<usize> {
    (0..NUM_BUCKETS).find(|&b| bucket_capacity(b) >= len)
}

pub fn config() -> CircuitConfig {
    CircuitConfig::standard_recursion_config()
}

/// Most block contexts a bucket's preimage can hold.
pub fn max_blocks(bucket: usize) -> usize {
    (bucket_capacity(bucket) - HEADER_LEN) / CONTEXT_HASHED_LEN
}

/// Targets of a chunk circuit the prover fills in.
pub struct ChunkTargets {
    pub len: Target,
    /// h_j: 32-byte hashes of block j in the data-hash preimage, one per possible block context.
    pub hashes: Vec<Target>,
    pub bytes: Vec<Target>,
    pub data_hash: Vec<Target>,
    pub pi_hash: Vec<Target>,
    pub block_count: Target,
    /// in_len[i] = (i < len), one per byte.
    pub in_len: Vec<BoolTarget>,
    /// in_blocks[j] = (j < block_count), one per possible block context.
    pub in_blocks: Vec<BoolTarget>,
}

/// Booleans s_0..s_{n-1} with s_i = 1 exactly for i < count: non-increasing, summing to count
/// (so count <= n as well).
fn prefix_selector(b: &mut CircuitBuilder<F, D>, n: usize, count: Target) -> Vec<BoolTarget> {
    let s: Vec<BoolTarget> = (0..n).map(|_| b.add_virtual_bool_target_safe()).collect();
    for w in s.windows(2) {
        // s_{i+1} * (1 - s_i) == 0: once a selector is 0, all later ones are.
        let t = b.arithmetic(F::NEG_ONE, F::ONE, w[1].target, w[0].target, w[1].target);
        b.assert_zero(t);
    }
    let sum = b.add_many(s.iter().map(|x| x.target));
    b.connect(sum, count);
    s
}

/// Packs big-endian bytes into big-endian u32 limbs.
fn pack_be(builder: &mut CircuitBuilder<F, D>, bytes: &[Target]) -> Vec<Target> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut acc = builder.zero();
            for &b in c {
                acc = builder.mul_const_add(F::from_canonical_u32(256), acc, b);
            }
            acc
        })
        .collect()
}

fn u32_limbs(builder: &mut CircuitBuilder<F, D>, n: usize) -> Vec<Target> {
    (0..n)
        .map(|_| {
            let t = builder.add_virtual_target();
            builder.range_check(t, 32);
            t
        })
        .collect()
}

/// Bytes of the codec v1+ tail of the committed preimage (the tx bytes hash); 0 for codec v0.
pub fn tail_len(fork: Fork) -> usize {
    if fork.codec() == 0 {
        0
    } else {
        32
    }
}

/// Chunk circuit of `fork` for bucket `bucket`: every preimage byte is range-checked to 8 bits and
/// hashed with Poseidon in-circuit (after the fork's tag); chain id and roots in the public inputs
/// are packed from the hashed bytes; len, padding, hashes per block and block count are
/// constrained as the module docs say.
pub fn build_chunk(bucket: usize, fork: Fork) -> (Data, ChunkTargets) {
    let cap = bucket_capacity(bucket);
    let mut b = CircuitBuilder::<F, D>::new(config());
    let len = b.add_virtual_target();
    b.range_check(len, 32);
    // len <= cap (also implied by the selector sum; explicit because the witness generator's check
    // was the only one before).
    let cap_t = b.constant(F::from_canonical_usize(cap));
    let slack = b.sub(cap_t, len);
    b.range_check(slack, 32);
    // Bytes are range-checked through a 256-entry lookup table (about 40 lookups per row) rather
    // than a bit decomposition per byte (one row each): that saving pays for the padding and
    // block-count constraints below, which would otherwise double the smaller buckets' degree.
    let byte_table =
        b.add_lookup_table_from_pairs(std::sync::Arc::new((0..256u16).map(|i| (i, i)).collect()));
    let bytes: Vec<Target> = (0..cap)
        .map(|_| {
            let t = b.add_virtual_target();
            let same = b.add_lookup_from_index(t, byte_table);
            b.connect(same, t);
            t
        })
        .collect();
    // Zero padding: byte_i * (1 - [i < len]) == 0, so nothing after len can vary the commitment.
    let in_len = prefix_selector(&mut b, cap, len);
    for (&byte, s) in bytes.iter().zip(&in_len) {
        let outside = b.arithmetic(F::NEG_ONE, F::ONE, byte, s.target, byte);
        b.assert_zero(outside);
    }
    // Block count and hashes per block: at least one block; h_j < 2^16, 0 from block_count on,
    // and at most the tx count of context j (the bytes at its offset 56..58); then
    // len = header + 58 n + 32 (h_0 + h_1 + ...) + the codec's tail.
    let block_count = b.add_virtual_target();
    let blocks = max_blocks(bucket);
    let in_blocks = prefix_selector(&mut b, blocks, block_count);
    let one = b.one();
    b.connect(in_blocks[0].target, one);
    let hashes: Vec<Target> = (0..blocks).map(|_| b.add_virtual_target()).collect();
    for (j, (&h, s)) in hashes.iter().zip(&in_blocks).enumerate() {
        b.range_check(h, 16);
        let outside = b.arithmetic(F::NEG_ONE, F::ONE, h, s.target, h);
        b.assert_zero(outside);
        let at = HEADER_LEN + CONTEXT_HASHED_LEN * j + CONTEXT_HASHED_LEN - 2;
        let n_tx = b.mul_const_add(F::from_canonical_u32(256), bytes[at], bytes[at + 1]);
        let spare = b.sub(n_tx, h);
        let spare = b.mul(s.target, spare);
        b.range_check(spare, 16);
    }
    let total = b.add_many(hashes.iter().copied());
    let fixed = b.constant(F::from_canonical_usize(HEADER_LEN + tail_len(fork)));
    let with_contexts = b.mul_const_add(
        F::from_canonical_usize(CONTEXT_HASHED_LEN),
        block_count,
        fixed,
    );
    let expected_len = b.mul_const_add(F::from_canonical_u32(32), total, with_contexts);
    b.connect(expected_len, len);
    let header = pack_be(&mut b, &bytes[..HEADER_LEN]);
    let data_hash = u32_limbs(&mut b, 8);
    let pi_hash = u32_limbs(&mut b, 8);
    let tag = b.constant(F::from_canonical_u64(fork.tag()));
    let mut preimage = vec![tag, len];
    preimage.extend_from_slice(&bytes);
    preimage.extend_from_slice(&hashes);
    let commitment = b.hash_n_to_hash_no_pad::<PoseidonHash>(preimage);
    b.register_public_inputs(&header);
    b.register_public_inputs(&data_hash);
    b.register_public_inputs(&pi_hash);
    b.register_public_inputs(&commitment.elements);
    b.register_public_input(len);
    b.register_public_input(block_count);
    let data = b.build::<C>();
    (
        data,
        ChunkTargets {
            len,
            hashes,
            bytes,
            data_hash,
            pi_hash,
            block_count,
            in_len,
            in_blocks,
        },
    )
}

pub fn limbs_of(bytes: &[u8; 32]) -> [F; 8] {
    let mut out = [F::ZERO; 8];
    for (i, c) in bytes.chunks(4).enumerate() {
        out[i] = F::from_canonical_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    out
}

/// What a chunk proof claims; the honest prover takes it from `ChunkInfo`, tests forge it.
pub struct ChunkWitness<'a> {
    pub preimage: &'a [u8],
    /// 32-byte hashes per block in the data-hash preimage (`ChunkInfo::hash_counts`).
    pub hash_counts: &'a [u16],
    pub data_hash: &'a [u8; 32],
    pub pi_hash: &'a [u8; 32],
    pub block_count: usize,
    /// Bytes after the preimage; all zero for an honest prover (tests set others).
    pub padding: u8,
}

pub fn set_chunk_witness(t: &ChunkTargets, w: &ChunkWitness) -> Result<PartialWitness<F>> {
    let (preimage, data_hash, pi_hash) = (w.preimage, w.data_hash, w.pi_hash);
    if preimage.len() > t.bytes.len() {
        bail!(
            "chunk preimage of {} bytes exceeds bucket capacity {}",
            preimage.len(),
            t.bytes.len()
        );
    }
    let mut pw = PartialWitness::new();
    pw.set_target(t.len, F::from_canonical_usize(preimage.len()))?;
    for (i, &tb) in t.bytes.iter().enumerate() {
        let v = preimage.get(i).copied().unwrap_or(w.padding);
        pw.set_target(tb, F::from_canonical_u8(v))?;
        pw.set_bool_target(t.in_len[i], i < preimage.len())?;
    }
    if w.hash_counts.len() > t.hashes.len() {
        bail!(
            "{} blocks exceed the {} block contexts of the chunk circuit",
            w.hash_counts.len(),
            t.hashes.len()
        );
    }
    for (j, &h) in t.hashes.iter().enumerate() {
        let n = w.hash_counts.get(j).copied().unwrap_or(0);
        pw.set_target(h, F::from_canonical_u16(n))?;
    }
    pw.set_target(t.block_count, F::from_canonical_usize(w.block_count))?;
    for (j, s) in t.in_blocks.iter().enumerate() {
        pw.set_bool_target(*s, j < w.block_count)?;
    }
    for (ts, v) in [(&t.data_hash, data_hash), (&t.pi_hash, pi_hash)] {
        for (&tt, val) in ts.iter().zip(limbs_of(v)) {
            pw.set_target(tt, val)?;
        }
    }
    Ok(pw)
}

/// Native Poseidon commitment, equal to what `fork`'s chunk circuit of `bucket` computes for this
/// preimage and these hashes per block: over [tag, len, bytes, zero padding, h_0, .., zeros].
pub fn commitment_of(
    fork: Fork,
    preimage: &[u8],
    hash_counts: &[u16],
    bucket: usize,
) -> HashOut<F> {
    let cap = bucket_capacity(bucket);
    let blocks = max_blocks(bucket);
    let mut elems = Vec::with_capacity(2 + cap + blocks);
    elems.push(F::from_canonical_u64(fork.tag()));
    elems.push(F::from_canonical_usize(preimage.len()));
    elems.extend(preimage.iter().map(|&b| F::from_canonical_u8(b)));
    elems.resize(2 + cap, F::ZERO);
    elems.extend(hash_counts.iter().map(|&h| F::from_canonical_u16(h)));
    elems.resize(2 + cap + blocks, F::ZERO);
    PoseidonHash::hash_no_pad(&elems)
}

/// Wrap circuit: verifies one chunk proof of a given bucket against that bucket's constant key and
/// re-exposes its public inputs; padded to `degree_bits` so all buckets share one common data.
pub struct WrapBuilder {
    pub builder: CircuitBuilder<F, D>,
    pub proof: ProofWithPublicInputsTarget<D>,
}

pub fn wrap_builder(chunk_common: &Common, chunk_vk: &VerifierOnly) -> WrapBuilder {
    let mut b = CircuitBuilder::<F, D>::new(config());
    let proof = b.add_virtual_proof_with_pis(chunk_common);
    let vd = b.constant_verifier_data(chunk_vk);
    b.verify_proof::<C>(&proof, &vd, chunk_common);
    b.register_public_inputs(&proof.public_inputs);
    WrapBuilder { builder: b, proof }
}

pub fn pad_and_build(mut b: CircuitBuilder<F, D>, degree_bits: usize) -> Data {
    // build() adds a few gates (public-input hashing, constants); aim for just over half the target.
    while b.num_gates() < (1 << (degree_bits - 1)) + 1 {
        b.add_gate(NoopGate, vec![]);
    }
    b.build::<C>()
}

/// Hash identifying a verifier key inside circuits: Poseidon over its cap and digest.
pub fn vk_hash(vk: &VerifierOnly) -> HashOut<F> {
    let mut elems: Vec<F> = vk
        .constants_sigmas_cap
        .0
        .iter()
        .flat_map(|h| h.elements)
        .collect();
    elems.extend_from_slice(&vk.circuit_digest.elements);
    PoseidonHash::hash_no_pad(&elems)
}

fn vk_hash_target(b: &mut CircuitBuilder<F, D>, vd: &VerifierCircuitTarget) -> HashOutTarget {
    let mut elems: Vec<Target> = vd
        .constants_sigmas_cap
        .0
        .iter()
        .flat_map(|h| h.elements)
        .collect();
    elems.extend_from_slice(&vd.circuit_digest.elements);
    b.hash_n_to_hash_no_pad::<PoseidonHash>(elems)
}

/// Where the public inputs of one sub-proof keep what a recursion over such sub-proofs binds: the
/// batch circuit's chunk proofs, the bundle circuit's batch proofs.
struct SubLayout {
    chain_id: usize,
    prev: usize,
    post: usize,
    withdraw: usize,
    block_count: usize,
    /// Range re-exposed per sub-proof: a chunk's data hash, a batch's commitment.
    listed: std::ops::Range<usize>,
}

const CHUNKS_IN_BATCH: SubLayout = SubLayout {
    chain_id: chunk_pi::CHAIN_ID,
    prev: chunk_pi::PREV,
    post: chunk_pi::POST,
    withdraw: chunk_pi::WITHDRAW,
    block_count: chunk_pi::BLOCK_COUNT,
    listed: chunk_pi::DATA_HASH..chunk_pi::DATA_HASH + 8,
};

const BATCHES_IN_BUNDLE: SubLayout = SubLayout {
    chain_id: batch_pi::CHAIN_ID,
    prev: batch_pi::PREV,
    post: batch_pi::POST,
    withdraw: batch_pi::WITHDRAW,
    block_count: batch_pi::BLOCKS,
    listed: batch_pi::COMMITMENT..batch_pi::COMMITMENT + 4,
};

/// The binding rules the batch circuit applies to its chunk proofs and the bundle circuit to its
/// batch proofs: sub-proofs chain (post root i == prev root i+1, same chain id); public inputs are
/// chain id, first prev root, last post and withdraw roots, a Poseidon commitment over every
/// sub-proof public input, the count, the summed block count, then each sub-proof's `listed`
/// range (the `batch_pi` / `bundle_pi` layouts). One function for both, in one order of builder
/// calls: the order fixes the circuit, hence the keys and the cached files.
fn bind_chain(
    b: &mut CircuitBuilder<F, D>,
    proofs: &[ProofWithPublicInputsTarget<D>],
    l: &SubLayout,
) {
    let pis: Vec<&Vec<Target>> = proofs.iter().map(|p| &p.public_inputs).collect();
    for w in pis.windows(2) {
        for i in 0..8 {
            b.connect(w[0][l.post + i], w[1][l.prev + i]);
        }
        for i in 0..2 {
            b.connect(w[0][l.chain_id + i], w[1][l.chain_id + i]);
        }
    }
    let first = pis[0];
    let last = pis[pis.len() - 1];
    let all: Vec<Target> = pis.iter().flat_map(|p| p.iter().copied()).collect();
    let commitment = b.hash_n_to_hash_no_pad::<PoseidonHash>(all);
    b.register_public_inputs(&first[l.chain_id..l.chain_id + 2]);
    b.register_public_inputs(&first[l.prev..l.prev + 8]);
    b.register_public_inputs(&last[l.post..l.post + 8]);
    b.register_public_inputs(&last[l.withdraw..l.withdraw + 8]);
    b.register_public_inputs(&commitment.elements);
    let count = b.constant(F::from_canonical_usize(pis.len()));
    b.register_public_input(count);
    let blocks = b.add_many(pis.iter().map(|p| p[l.block_count]));
    b.register_public_input(blocks);
    for p in &pis {
        b.register_public_inputs(&p[l.listed.clone()]);
    }
}

pub struct BatchTargets {
    pub proofs: Vec<ProofWithPublicInputsTarget<D>>,
    pub vks: Vec<VerifierCircuitTarget>,
    pub selectors: Vec<Vec<BoolTarget>>,
}

/// Batch circuit over `n` wrapped chunk proofs: each verified recursively with a key proven to be one
/// of the wrap keys in `allowed`; chunks must chain (post root i == prev root i+1, same chain id);
/// the total block count is summed from the chunks' public inputs.
pub fn build_batch(n: usize, wrap_common: &Common, allowed: &[HashOut<F>]) -> (Data, BatchTargets) {
    let mut b = CircuitBuilder::<F, D>::new(config());
    let cap_height = wrap_common.config.fri_config.cap_height;
    let mut proofs = Vec::with_capacity(n);
    let mut vks = Vec::with_capacity(n);
    let mut selectors = Vec::with_capacity(n);
    for _ in 0..n {
        let proof = b.add_virtual_proof_with_pis(wrap_common);
        let vd = b.add_virtual_verifier_data(cap_height);
        let h = vk_hash_target(&mut b, &vd);
        let sel: Vec<BoolTarget> = allowed
            .iter()
            .map(|_| b.add_virtual_bool_target_safe())
            .collect();
        let one = b.one();
        let sum = b.add_many(sel.iter().map(|s| s.target));
        b.connect(sum, one);
        for e in 0..4 {
            let mut acc = b.zero();
            for (s, a) in sel.iter().zip(allowed) {
                acc = b.mul_const_add(a.elements[e], s.target, acc);
            }
            b.connect(acc, h.elements[e]);
        }
        b.verify_proof::<C>(&proof, &vd, wrap_common);
        proofs.push(proof);
        vks.push(vd);
        selectors.push(sel);
    }
    bind_chain(&mut b, &proofs, &CHUNKS_IN_BATCH);
    let data = b.build::<C>();
    (
        data,
        BatchTargets {
            proofs,
            vks,
            selectors,
        },
    )
}

pub fn set_batch_witness(
    t: &BatchTargets,
    proofs: &[(Proof, VerifierOnly, usize)],
) -> Result<PartialWitness<F>> {
    if proofs.len() != t.proofs.len() {
        return Err(anyhow!(
            "batch circuit for {} chunks got {}",
            t.proofs.len(),
            proofs.len()
        ));
    }
    let mut pw = PartialWitness::new();
    for (i, (proof, vk, bucket)) in proofs.iter().enumerate() {
        pw.set_proof_with_pis_target(&t.proofs[i], proof)?;
        pw.set_verifier_data_target(&t.vks[i], vk)?;
        for (j, s) in t.selectors[i].iter().enumerate() {
            pw.set_bool_target(*s, j == *bucket)?;
        }
    }
    Ok(pw)
}

pub struct BundleTargets {
    pub proofs: Vec<ProofWithPublicInputsTarget<D>>,
}

/// Bundle circuit over batch proofs of the given batch circuits, in this order (one per batch:
/// its common data and verifier key, i.e. its chunk count). Each batch proof is verified
/// recursively against the constant key of its batch circuit (so no selector is needed: the key
/// set is fixed by the circuit's key); batches must chain (post root i == prev root i+1, same
/// chain id); each batch's chunk count is re-asserted; the total block count is summed from the
/// batches' public inputs. The same rules the batch circuit applies to chunk proofs.
pub fn build_bundle(batches: &[(&Common, &VerifierOnly)]) -> (Data, BundleTargets) {
    let mut b = CircuitBuilder::<F, D>::new(config());
    let mut proofs = Vec::with_capacity(batches.len());
    for (common, vk) in batches {
        let proof = b.add_virtual_proof_with_pis(common);
        let vd = b.constant_verifier_data(vk);
        b.verify_proof::<C>(&proof, &vd, common);
        // The key already fixes it; explicit so the count is bound whatever the batch circuit.
        let n = (proof.public_inputs.len() - batch_pi::DATA_HASHES) / 8;
        let n_t = b.constant(F::from_canonical_usize(n));
        b.connect(proof.public_inputs[batch_pi::COUNT], n_t);
        proofs.push(proof);
    }
    bind_chain(&mut b, &proofs, &BATCHES_IN_BUNDLE);
    let data = b.build::<C>();
    (data, BundleTargets { proofs })
}

pub fn set_bundle_witness(t: &BundleTargets, proofs: &[Proof]) -> Result<PartialWitness<F>> {
    if proofs.len() != t.proofs.len() {
        return Err(anyhow!(
            "bundle circuit for {} batches got {}",
            t.proofs.len(),
            proofs.len()
        ));
    }
    let mut pw = PartialWitness::new();
    for (target, proof) in t.proofs.iter().zip(proofs) {
        pw.set_proof_with_pis_target(target, proof)?;
    }
    Ok(pw)
}

/// Batch commitment recomputed natively from the chunk public inputs (a bundle's, likewise, from
/// its batches' public inputs).
pub fn batch_commitment(chunk_pis: &[Vec<F>]) -> HashOut<F> {
    let all: Vec<F> = chunk_pis.iter().flatten().copied().collect();
    PoseidonHash::hash_no_pad(&all)
}

pub fn hash_bytes(h: &HashOut<F>) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, e) in h.elements.iter().enumerate() {
        out[8 * i..8 * i + 8].copy_from_slice(&e.to_canonical_u64().to_be_bytes());
    }
    out
}
