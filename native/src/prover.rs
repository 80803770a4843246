//! Chunk and batch proving and verification over a `Store`.

use anyhow::{anyhow, bail, Context, Result};
use plonky2::field::types::{Field, PrimeField64};
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use serde_json::{json, Value};

use crate::aggproof::{
    batch_instance, chunk_instance, frame, roots_of, unframe, AggBytes, KIND_BATCH, KIND_CHUNK,
};
use crate::circuits::{
    batch_commitment, batch_pi, bucket_capacity, bucket_for, chunk_pi, commitment_of, hash_bytes,
    set_batch_witness, set_chunk_witness, Proof, VerifierOnly, F, NUM_BUCKETS,
};
use crate::store::Store;
use crate::trace::{check_contiguous, chunk_info, keccak, parse_traces, pi_hash, Block, ChunkInfo};

/// Runs a plonky2 prover, turning its internal panics (e.g. conflicting witness) into errors.
fn prove_guarded(what: &str, f: impl FnOnce() -> Result<Proof>) -> Result<Proof> {
    // The circuit data is only read while proving, so a panic leaves nothing half-updated.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.with_context(|| format!("{what} proving failed")),
        Err(p) => Err(anyhow!(
            "{what} proving failed: {}",
            crate::panic_message(&p)
        )),
    }
}

/// Longest prefix of blocks whose preimage fits the largest bucket (trailing blocks are dropped,
/// as block_count in AggProof allows).
fn fitting_prefix(blocks: &[Block]) -> Result<usize> {
    let max = bucket_capacity(NUM_BUCKETS - 1);
    let mut len = crate::trace::HEADER_LEN;
    for (i, b) in blocks.iter().enumerate() {
        len += b.encoded_len();
        if len > max {
            if i == 0 {
                bail!(
                    "block {} alone exceeds the chunk circuit capacity ({max} bytes)",
                    b.number
                );
            }
            return Ok(i);
        }
    }
    Ok(blocks.len())
}

/// Chunk info of the traces as the prover will prove them (ordering checked, capacity applied).
pub fn prepare_chunk(traces_json: &str) -> Result<ChunkInfo> {
    let blocks = parse_traces(traces_json)?;
    check_contiguous(&blocks)?;
    let n = fitting_prefix(&blocks)?;
    chunk_info(&blocks[..n], 0)
}

pub fn gen_chunk_proof(store: &Store, traces_json: &str) -> Result<String> {
    let info = prepare_chunk(traces_json)?;
    let bucket = bucket_for(info.preimage.len()).ok_or_else(|| anyhow!("chunk too large"))?;
    let b = store.bucket(bucket)?;
    let pw = set_chunk_witness(
        &b.chunk_targets,
        &info.preimage,
        &info.data_hash,
        &info.pi_hash,
    )?;
    let inner = prove_guarded("chunk", || b.chunk.prove(pw))?;
    let mut pw = PartialWitness::new();
    pw.set_proof_with_pis_target(&b.wrap_proof, &inner)?;
    let wrapped = prove_guarded("wrap", || b.wrap.prove(pw))?;
    let pis = &wrapped.public_inputs;
    let instance = chunk_instance(pis)?;
    let commitment = hash_bytes(&commitment_of(&info.preimage, bucket));
    if instance[136..168] != info.pi_hash || instance[168..200] != commitment {
        bail!("internal error: proof public inputs differ from the chunk info");
    }
    Ok(AggBytes {
        proof: frame(KIND_CHUNK, bucket as u16, &wrapped.to_bytes()),
        final_pair: [info.pi_hash, commitment].concat(),
        instance,
        vk: hash_bytes(&store.wrap_vds[bucket].verifier_only.circuit_digest).to_vec(),
        block_count: info.block_count as u64,
    }
    .to_json())
}

/// Checks every byte of a chunk AggProof; returns the wrapped proof and its bucket.
fn check_chunk(store: &Store, p: &AggBytes) -> Result<(Proof, usize)> {
    let (param, payload) = unframe(KIND_CHUNK, &p.proof)?;
    let bucket = param as usize;
    let vd = store
        .wrap_vds
        .get(bucket)
        .ok_or_else(|| anyhow!("unknown chunk bucket {bucket}"))?;
    let proof = Proof::from_bytes(payload.to_vec(), &vd.common)?;
    if proof.to_bytes() != payload {
        bail!("proof bytes are not canonical");
    }
    if p.vk != hash_bytes(&vd.verifier_only.circuit_digest) {
        bail!("vk does not match the chunk verifier key");
    }
    let pis = &proof.public_inputs;
    if p.instance != chunk_instance(pis)? {
        bail!("instance does not match the proof's public inputs");
    }
    let r = roots_of(&p.instance)?;
    let dh: [u8; 32] = p.instance[104..136].try_into()?;
    if pi_hash(r.chain_id, &r.prev, &r.post, &r.withdraw, &dh)[..] != p.instance[136..168] {
        bail!("pi hash is not keccak of the chunk info");
    }
    if p.final_pair != p.instance[136..200] {
        bail!("final_pair does not match the instance");
    }
    let len = pis[chunk_pi::LEN].to_canonical_u64() as usize;
    if bucket_for(len) != Some(bucket) {
        bail!("chunk proved in bucket {bucket} but its length {len} belongs elsewhere");
    }
    vd.verify(proof.clone()).context("proof does not verify")?;
    Ok((proof, bucket))
}

pub fn verify_chunk_proof(store: &Store, proof_json: &str) -> Result<()> {
    check_chunk(store, &AggBytes::from_json(proof_json)?).map(|_| ())
}

/// Scroll's batch public input hash: keccak(chain id | prev | post | withdraw | keccak(data hashes)).
fn batch_pi_hash(instance: &[u8]) -> Result<[u8; 32]> {
    let r = roots_of(instance)?;
    let batch_data_hash = keccak(&instance[144..]);
    Ok(pi_hash(
        r.chain_id,
        &r.prev,
        &r.post,
        &r.withdraw,
        &batch_data_hash,
    ))
}

pub fn gen_batch_proof(store: &Store, chunk_proofs_json: &str) -> Result<String> {
    let items: Vec<Value> = match serde_json::from_str(chunk_proofs_json)
        .map_err(|e| anyhow!("chunk proofs: expected a JSON array of AggProof: {e}"))?
    {
        Value::Array(a) => a,
        _ => bail!("chunk proofs: expected a JSON array of AggProof"),
    };
    if items.is_empty() {
        bail!("empty batch: no chunk proofs");
    }
    let mut checked = Vec::with_capacity(items.len());
    let mut blocks = 0u64;
    for (i, v) in items.into_iter().enumerate() {
        // Accept AggProof objects or JSON strings holding one.
        let p = match v {
            Value::String(s) => AggBytes::from_json(&s),
            other => AggBytes::from_value(other),
        }
        .with_context(|| format!("chunk proof {i}"))?;
        let (proof, bucket) =
            check_chunk(store, &p).with_context(|| format!("chunk proof {i} invalid"))?;
        blocks += p.block_count;
        checked.push((roots_of(&p.instance)?, proof, bucket));
    }
    for (i, w) in checked.windows(2).enumerate() {
        if w[0].0.post != w[1].0.prev {
            bail!(
                "chunks not contiguous: chunk {} post state root != chunk {} prev state root",
                i,
                i + 1
            );
        }
        if w[0].0.chain_id != w[1].0.chain_id {
            bail!("chunks {} and {} have different chain ids", i, i + 1);
        }
    }
    let n = checked.len();
    let circuit = store.batch(n)?;
    let inputs: Vec<(Proof, VerifierOnly, usize)> = checked
        .into_iter()
        .map(|(_, p, j)| (p, store.wrap_vds[j].verifier_only.clone(), j))
        .collect();
    let chunk_pis: Vec<Vec<F>> = inputs.iter().map(|i| i.0.public_inputs.clone()).collect();
    let pw = set_batch_witness(&circuit.targets, &inputs)?;
    let proof = prove_guarded("batch", || circuit.data.prove(pw))?;
    let instance = batch_instance(&proof.public_inputs)?;
    let commitment = hash_bytes(&batch_commitment(&chunk_pis));
    if instance[104..136] != commitment {
        bail!("internal error: batch commitment mismatch");
    }
    Ok(AggBytes {
        proof: frame(KIND_BATCH, n as u16, &proof.to_bytes()),
        final_pair: [batch_pi_hash(&instance)?, commitment].concat(),
        instance,
        vk: hash_bytes(&circuit.data.verifier_only.circuit_digest).to_vec(),
        block_count: blocks,
    }
    .to_json())
}

pub fn verify_batch_proof(store: &Store, proof_json: &str) -> Result<()> {
    let p = AggBytes::from_json(proof_json)?;
    let (n, payload) = unframe(KIND_BATCH, &p.proof)?;
    let n = n as usize;
    if n == 0 {
        bail!("batch of 0 chunks");
    }
    let vd = store.batch_vd(n)?;
    let proof = Proof::from_bytes(payload.to_vec(), &vd.common)?;
    if proof.to_bytes() != payload {
        bail!("proof bytes are not canonical");
    }
    if p.vk != hash_bytes(&vd.verifier_only.circuit_digest) {
        bail!("vk does not match the batch verifier key");
    }
    let pis = &proof.public_inputs;
    if pis.len() != batch_pi::len(n) || pis[batch_pi::COUNT] != F::from_canonical_usize(n) {
        bail!("batch public inputs malformed");
    }
    if p.instance != batch_instance(pis)? {
        bail!("instance does not match the proof's public inputs");
    }
    if p.final_pair[..]
        != [
            batch_pi_hash(&p.instance)?,
            p.instance[104..136].try_into()?,
        ]
        .concat()[..]
    {
        bail!("final_pair does not match the instance");
    }
    vd.verify(proof).context("proof does not verify")
}

/// Chunk info as JSON (Scroll's `block_traces_to_chunk_info`): no ordering checks, no proof.
pub fn chunk_info_json(traces_json: &str) -> Result<String> {
    let blocks = parse_traces(traces_json)?;
    let info = chunk_info(&blocks, 0)?;
    let hex = |b: &[u8]| {
        format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    };
    let commitment = bucket_for(info.preimage.len())
        .map(|j| hex(&hash_bytes(&commitment_of(&info.preimage, j))));
    Ok(json!({
        "chain_id": info.chain_id,
        "prev_state_root": hex(&info.prev_state_root),
        "post_state_root": hex(&info.post_state_root),
        "withdraw_root": hex(&info.withdraw_root),
        "data_hash": hex(&info.data_hash),
        "public_input_hash": hex(&info.pi_hash),
        "commitment": commitment,
        "block_count": info.block_count,
        "tx_count": info.tx_count,
        "num_l1_messages": info.l1_messages,
    })
    .to_string())
}
