//! Chunk, batch and bundle proving and verification over a `Store`, i.e. with one fork's circuits:
//! a proof of another fork is refused (its `vk` is another fork's key), naming that fork when it is
//! open in this process.
//!
//! Failure model: a proof is valid only as a proof of the task it answers. Provers refuse inputs
//! they cannot prove whole (blocks over the largest bucket, chunk or batch proofs that do not form
//! one chain, bundles over the batch limit) instead of proving a prefix or a wrong order; verifiers take what the task determines
//! (chunk info recomputed from the task's traces) and name the first instance field that differs.

use anyhow::{anyhow, bail, Context, Result};
use plonky2::field::types::{Field, PrimeField64};
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::aggproof::{
    batch_instance, bundle_instance, chunk_instance, frame, roots_of, unframe, AggBytes, Roots,
    BATCH_DATA_HASHES, BUNDLE_BATCH_COMMITMENTS, KIND_BATCH, KIND_BUNDLE, KIND_CHUNK,
};
use crate::circuits::{
    batch_commitment, batch_pi, bucket_capacity, bucket_for, bundle_pi, chunk_pi, commitment_of,
    hash_bytes, limbs_of, set_batch_witness, set_bundle_witness, set_chunk_witness, ChunkWitness,
    Data, Proof, VerifierOnly, F, MAX_BUNDLE_BATCHES, NUM_BUCKETS,
};
use std::sync::Arc;

use crate::fork::Fork;
use crate::store::{check_bundle_shape, fork_of_key, Store, VerifierData};
use crate::trace::{
    batch_data_hash, check_contiguous, chunk_info, parse_h256, parse_traces, pi_hash, preimage_len,
    Block, ChunkInfo,
};

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

/// Refuses blocks whose preimage (under `fork`'s codec) exceeds the largest bucket: a proof of a
/// prefix would answer another task than the one given.
fn check_capacity(blocks: &[Block], fork: Fork) -> Result<()> {
    let max = bucket_capacity(NUM_BUCKETS - 1);
    let len = preimage_len(blocks, fork);
    if len > max {
        let mut fit = len - blocks.iter().map(|b| b.encoded_len(fork)).sum::<usize>();
        let fitting = blocks
            .iter()
            .take_while(|b| {
                fit += b.encoded_len(fork);
                fit <= max
            })
            .count();
        bail!(
            "chunk too large: {} blocks ({}..={}) encode to {len} bytes, over the largest chunk \
             circuit capacity of {max} bytes (only the first {fitting} blocks would fit); split \
             the chunk",
            blocks.len(),
            blocks.first().map_or(0, |b| b.number),
            blocks.last().map_or(0, |b| b.number),
        );
    }
    Ok(())
}

/// Chunk info of the traces under `fork` as the prover will prove them (ordering and capacity
/// checked).
pub fn prepare_chunk(traces_json: &str, chain_id: Option<u64>, fork: Fork) -> Result<ChunkInfo> {
    let blocks = parse_traces(traces_json)?;
    check_contiguous(&blocks)?;
    check_capacity(&blocks, fork)?;
    chunk_info(&blocks, chain_id, None, fork)
}

/// Name of a proof kind in messages.
fn kind_name(kind: u16) -> &'static str {
    match kind {
        KIND_CHUNK => "chunk",
        KIND_BATCH => "batch",
        _ => "bundle",
    }
}

/// Checks a proof's `vk` is the key of its kind of `store`'s fork. Another fork's key is refused
/// naming that fork when it is open in this process (`fork_of_key`).
fn check_vk(store: &Store, kind: u16, p: &AggBytes) -> Result<()> {
    let key = store.key(kind)?;
    if p.vk == key {
        return Ok(());
    }
    let what = kind_name(kind);
    let fork = store.fork;
    match fork_of_key(kind, &p.vk) {
        Some(other) => bail!(
            "a {what} proof of fork {other}, not of fork {fork}: its vk {} is fork {other}'s {what} \
             key, fork {fork}'s is {}",
            hex(&p.vk),
            hex(&key)
        ),
        None => bail!(
            "not a {what} proof of fork {fork}: its vk {} is not fork {fork}'s {what} key {} (nor \
             that of another fork opened here)",
            hex(&p.vk),
            hex(&key)
        ),
    }
}

/// Proves one chunk witness (chunk circuit, then wrap) in the smallest bucket holding its
/// preimage. Public so tests can try forged witnesses; `gen_chunk_proof` is the honest caller.
pub fn prove_chunk_witness(store: &Store, w: &ChunkWitness) -> Result<(Proof, usize)> {
    let bucket = bucket_for(w.preimage.len()).ok_or_else(|| {
        anyhow!(
            "chunk preimage of {} bytes exceeds every bucket",
            w.preimage.len()
        )
    })?;
    let b = store.bucket(bucket)?;
    let pw = set_chunk_witness(&b.chunk_targets, w)?;
    let inner = prove_guarded("chunk", || b.chunk.prove(pw))?;
    let mut pw = PartialWitness::new();
    pw.set_proof_with_pis_target(&b.wrap_proof, &inner)?;
    Ok((prove_guarded("wrap", || b.wrap.prove(pw))?, bucket))
}

/// AggProof JSON of a wrapped chunk proof.
pub fn chunk_aggproof(store: &Store, wrapped: &Proof, bucket: usize) -> Result<String> {
    let instance = chunk_instance(&wrapped.public_inputs)?;
    let pis = &wrapped.public_inputs;
    Ok(AggBytes {
        proof: frame(KIND_CHUNK, bucket as u16, &wrapped.to_bytes()),
        final_pair: instance[136..200].to_vec(),
        vk: store.chunk_key.to_vec(),
        block_count: pis[chunk_pi::BLOCK_COUNT].to_canonical_u64(),
        instance,
    }
    .to_json())
}

/// Proves the chunk of `traces_json` with `store`'s fork. `chain_id`: the task's/configuration's
/// (None: the traces must carry chainID); it must agree with the traces'.
pub fn gen_chunk_proof(store: &Store, traces_json: &str, chain_id: Option<u64>) -> Result<String> {
    let info = prepare_chunk(traces_json, chain_id, store.fork)?;
    let (wrapped, bucket) = prove_chunk_witness(
        store,
        &ChunkWitness {
            preimage: &info.preimage,
            hash_counts: &info.hash_counts,
            data_hash: &info.data_hash,
            pi_hash: &info.pi_hash,
            block_count: info.block_count,
            padding: 0,
        },
    )?;
    let instance = chunk_instance(&wrapped.public_inputs)?;
    let commitment = hash_bytes(&commitment_of(
        store.fork,
        &info.preimage,
        &info.hash_counts,
        bucket,
    ));
    if instance[136..168] != info.pi_hash || instance[168..200] != commitment {
        bail!("internal error: proof public inputs differ from the chunk info");
    }
    chunk_aggproof(store, &wrapped, bucket)
}

/// Chunk info as a task determines it (the JSON `block_traces_to_chunk_info` returns).
/// `commitment` and `len`, when present, are compared too; `fork`, when present, must be the
/// verifier's. The public input hash: codec v0 recomputes it from the fields; codec v1+ needs
/// `tx_bytes_hash` (recomputed from it) or `public_input_hash` (taken as given); both present,
/// they must agree.
#[derive(Deserialize, Clone)]
struct ExpectedJson {
    chain_id: u64,
    prev_state_root: String,
    post_state_root: String,
    withdraw_root: String,
    data_hash: String,
    block_count: u64,
    #[serde(default)]
    commitment: Option<String>,
    #[serde(default)]
    len: Option<u64>,
    #[serde(default)]
    fork: Option<String>,
    #[serde(default)]
    public_input_hash: Option<String>,
    #[serde(default)]
    tx_bytes_hash: Option<String>,
}

pub struct Expected {
    roots: Roots,
    data_hash: [u8; 32],
    /// None: unknown (codec v1+ without tx_bytes_hash or public_input_hash).
    pi_hash: Option<[u8; 32]>,
    block_count: u64,
    commitment: Option<[u8; 32]>,
    len: Option<u64>,
}

impl Expected {
    fn from_value(v: Value, what: &str, fork: Fork) -> Result<Self> {
        let e: ExpectedJson =
            serde_json::from_value(v).map_err(|e| anyhow!("{what}: chunk info JSON: {e}"))?;
        let h = |s: &str, f: &str| parse_h256(s, &format!("{what}.{f}"));
        if let Some(name) = &e.fork {
            let of = Fork::parse(name).with_context(|| format!("{what}.fork"))?;
            if of != fork {
                bail!("{what}.fork: a chunk of fork {of}, verified with fork {fork}'s circuits");
            }
        }
        let roots = task_roots(
            e.chain_id,
            [&e.prev_state_root, &e.post_state_root, &e.withdraw_root],
            what,
        )?;
        let data_hash = h(&e.data_hash, "data_hash")?;
        let given = e
            .public_input_hash
            .as_deref()
            .map(|p| h(p, "public_input_hash"))
            .transpose()?;
        let tx_bytes_hash = match (fork.codec(), &e.tx_bytes_hash) {
            (0, Some(_)) => bail!("{what}.tx_bytes_hash: fork {fork} (codec v0) has none"),
            (_, t) => t.as_deref().map(|t| h(t, "tx_bytes_hash")).transpose()?,
        };
        let r = &roots;
        let computed = (fork.codec() == 0 || tx_bytes_hash.is_some()).then(|| {
            pi_hash(
                r.chain_id,
                &r.prev,
                &r.post,
                &r.withdraw,
                &data_hash,
                tx_bytes_hash.as_ref(),
            )
        });
        if let (Some(c), Some(g)) = (computed, given) {
            if c != g {
                bail!(
                    "{what}.public_input_hash {} is not the hash of the chunk info's fields ({})",
                    hex(&g),
                    hex(&c)
                );
            }
        }
        Ok(Expected {
            roots,
            data_hash,
            pi_hash: computed.or(given),
            block_count: e.block_count,
            commitment: e
                .commitment
                .as_deref()
                .map(|c| h(c, "commitment"))
                .transpose()?,
            len: e.len,
        })
    }

    /// The chunk circuit's public inputs this task determines (when commitment, len and the pi
    /// hash are known).
    fn public_inputs(&self) -> Option<Vec<F>> {
        let (commitment, len, pi) = (self.commitment?, self.len?, self.pi_hash?);
        let r = &self.roots;
        let mut v = limbed(r, &[&self.data_hash, &pi]);
        v.extend(commitment_elems(&commitment));
        v.push(F::from_canonical_u64(len));
        v.push(F::from_canonical_u64(self.block_count));
        Some(v)
    }
}

fn hex(b: &[u8]) -> String {
    format!(
        "0x{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Chain id and roots as a task's chunk or batch info gives them (the same JSON fields in both;
/// `what` names the info in errors).
fn task_roots(chain_id: u64, [prev, post, withdraw]: [&str; 3], what: &str) -> Result<Roots> {
    let h = |s: &str, f: &str| parse_h256(s, &format!("{what}.{f}"));
    Ok(Roots {
        chain_id,
        prev: h(prev, "prev_state_root")?,
        post: h(post, "post_state_root")?,
        withdraw: h(withdraw, "withdraw_root")?,
    })
}

/// The public inputs a chunk or batch circuit starts with: the chain id as two u32 limbs, the
/// three roots and then each further 32-byte part as eight (big-endian, as the circuits pack them).
fn limbed(r: &Roots, parts: &[&[u8; 32]]) -> Vec<F> {
    let mut v = vec![
        F::from_canonical_u64(r.chain_id >> 32),
        F::from_canonical_u64(r.chain_id & 0xffff_ffff),
    ];
    for part in [&r.prev, &r.post, &r.withdraw]
        .into_iter()
        .chain(parts.iter().copied())
    {
        v.extend_from_slice(&limbs_of(part));
    }
    v
}

/// Compares an instance's chain id and roots (its first 104 bytes, the same in every kind) with
/// the task's: chain id and prev root of the first sub-proof, post and withdraw roots of the last
/// (for a chunk, both its own).
fn compare_roots(i: &[u8], first: &Roots, last: &Roots) -> Result<()> {
    count_eq("chain_id", u64_at(i, 0)?, first.chain_id)?;
    field_eq("prev_state_root", &i[8..40], &first.prev)?;
    field_eq("post_state_root", &i[40..72], &last.post)?;
    field_eq("withdraw_root", &i[72..104], &last.withdraw)
}

/// The four field elements of a Poseidon commitment from its bytes (the inverse of `hash_bytes`).
fn commitment_elems(c: &[u8; 32]) -> impl Iterator<Item = F> + '_ {
    c.chunks_exact(8).map(|b| {
        let mut e = [0u8; 8];
        e.copy_from_slice(b);
        F::from_noncanonical_u64(u64::from_be_bytes(e))
    })
}

fn field_eq(field: &str, proof: &[u8], task: &[u8]) -> Result<()> {
    if proof != task {
        bail!(
            "instance field {field} differs from the task: proof {}, task {}",
            hex(proof),
            hex(task)
        );
    }
    Ok(())
}

fn count_eq(field: &str, proof: u64, task: u64) -> Result<()> {
    if proof != task {
        bail!("instance field {field} differs from the task: proof {proof}, task {task}");
    }
    Ok(())
}

fn u64_at(instance: &[u8], at: usize) -> Result<u64> {
    let b = instance
        .get(at..at + 8)
        .ok_or_else(|| anyhow!("instance too short"))?;
    Ok(u64::from_be_bytes(b.try_into()?))
}

/// Compares a chunk instance (already checked against its proof) with the task's chunk info.
fn compare_chunk(p: &AggBytes, e: &Expected) -> Result<()> {
    let i = &p.instance;
    compare_roots(i, &e.roots, &e.roots)?;
    field_eq("data_hash", &i[104..136], &e.data_hash)?;
    if let Some(pi) = &e.pi_hash {
        field_eq("public_input_hash", &i[136..168], pi)?;
    }
    count_eq("block_count", u64_at(i, 208)?, e.block_count)?;
    count_eq("block_count (AggProof)", p.block_count, e.block_count)?;
    if let Some(c) = &e.commitment {
        field_eq("commitment", &i[168..200], c)?;
    }
    if let Some(len) = e.len {
        count_eq("len", u64_at(i, 200)?, len)?;
    }
    Ok(())
}

/// Checks every byte of a chunk AggProof (and, given the task's chunk info, that it answers that
/// task); returns the wrapped proof and its bucket.
fn check_chunk(store: &Store, p: &AggBytes, task: Option<&Expected>) -> Result<(Proof, usize)> {
    let (param, payload) = unframe(KIND_CHUNK, &p.proof)?;
    check_vk(store, KIND_CHUNK, p)?;
    let bucket = param as usize;
    let vd = store
        .wrap_vds
        .get(bucket)
        .ok_or_else(|| anyhow!("unknown chunk bucket {bucket}"))?;
    let proof = decode_proof(payload, vd)?;
    let pis = &proof.public_inputs;
    if p.instance != chunk_instance(pis)? {
        bail!("instance does not match the proof's public inputs");
    }
    // Codec v0: the pi hash is a function of the instance. Codec v1+ adds the tx bytes hash, which
    // the instance does not carry: the task's chunk info gives the pi hash (`compare_chunk`).
    if store.fork.codec() == 0 {
        let r = roots_of(&p.instance)?;
        let dh: [u8; 32] = p.instance[104..136].try_into()?;
        let pi = pi_hash(r.chain_id, &r.prev, &r.post, &r.withdraw, &dh, None);
        if pi[..] != p.instance[136..168] {
            bail!("pi hash is not keccak of the chunk info");
        }
    }
    if p.final_pair != p.instance[136..200] {
        bail!("final_pair does not match the instance");
    }
    if p.block_count != pis[chunk_pi::BLOCK_COUNT].to_canonical_u64() {
        bail!("block_count does not match the proof's public inputs");
    }
    let len = pis[chunk_pi::LEN].to_canonical_u64() as usize;
    if bucket_for(len) != Some(bucket) {
        bail!("chunk proved in bucket {bucket} but its length {len} belongs elsewhere");
    }
    if let Some(e) = task {
        compare_chunk(p, e)?;
    }
    vd.verify(proof.clone()).context("proof does not verify")?;
    Ok((proof, bucket))
}

/// Verifies a chunk proof as a proof of the task whose chunk info is `chunk_info_json`, with
/// `store`'s fork.
pub fn verify_chunk_proof(store: &Store, proof_json: &str, chunk_info_json: &str) -> Result<()> {
    let v: Value = serde_json::from_str(chunk_info_json)
        .map_err(|e| anyhow!("chunk_info: expected a JSON object: {e}"))?;
    let task = Expected::from_value(v, "chunk_info", store.fork)?;
    if task.pi_hash.is_none() {
        bail!(
            "chunk_info: fork {} (codec v{}) needs tx_bytes_hash or public_input_hash to check the \
             proof's public input hash",
            store.fork,
            store.fork.codec()
        );
    }
    check_chunk(store, &AggBytes::from_json(proof_json)?, Some(&task)).map(|_| ())
}

/// Scroll-style public input hash of a batch or bundle instance: keccak(chain id | prev | post |
/// withdraw | keccak(the per-chunk data hashes, or per-batch commitments, from `list_at` on)). For
/// a batch the inner keccak is the batch data hash (da-codec's, every codec: `batch_data_hash`).
fn agg_pi_hash(instance: &[u8], list_at: usize) -> Result<[u8; 32]> {
    let r = roots_of(instance)?;
    let list = instance
        .get(list_at..)
        .ok_or_else(|| anyhow!("instance too short"))?;
    let hashes: Vec<[u8; 32]> = list
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect();
    if hashes.len() * 32 != list.len() {
        bail!("instance list is not a whole number of hashes");
    }
    Ok(pi_hash(
        r.chain_id,
        &r.prev,
        &r.post,
        &r.withdraw,
        &batch_data_hash(&hashes),
        None,
    ))
}

/// Chain order of chunks (or batches: `what`) by their roots: the given order when it chains, else
/// the unique order in which every post state root is the next one's prev state root. Never a
/// silent wrong order: anything else is an error naming the first break.
pub fn chain_order(roots: &[Roots], what: &str) -> Result<Vec<usize>> {
    let n = roots.len();
    let breaks = |order: &[usize]| {
        order
            .windows(2)
            .position(|w| roots[w[0]].post != roots[w[1]].prev)
    };
    let given: Vec<usize> = (0..n).collect();
    let Some(first_break) = breaks(&given) else {
        return Ok(given);
    };
    // Unique successor of each chunk and unique start (a prev root no other chunk ends at).
    let successors = |i: usize| -> Vec<usize> {
        (0..n)
            .filter(|&j| j != i && roots[j].prev == roots[i].post)
            .collect()
    };
    let starts: Vec<usize> = (0..n)
        .filter(|&j| !(0..n).any(|i| i != j && roots[i].post == roots[j].prev))
        .collect();
    let refuse = |why: String| {
        anyhow!(
            "{what} proofs not in chain order: {what} {} post state root {} != {what} {} prev \
             state root {}; {why}",
            first_break,
            hex(&roots[first_break].post),
            first_break + 1,
            hex(&roots[first_break + 1].prev)
        )
    };
    if starts.len() != 1 {
        return Err(refuse(format!(
            "no reordering by roots: {} {what} proofs start a chain",
            starts.len()
        )));
    }
    let mut order = vec![starts[0]];
    while order.len() < n {
        let last = order[order.len() - 1];
        match successors(last).as_slice() {
            [next] if !order.contains(next) => order.push(*next),
            [] => {
                return Err(refuse(format!(
                    "no reordering by roots: no {what} continues {what} {last}"
                )))
            }
            _ => {
                return Err(refuse(format!(
                    "no reordering by roots: {what} {last} has no unique successor"
                )))
            }
        }
    }
    Ok(order)
}

/// One level of recursion over sub-proofs: a batch over chunk proofs, a bundle over batch proofs.
/// Both apply the same binding rules (count, chaining, chain id, roots, block count, one listed
/// field per sub-proof, a commitment over every sub-proof public input), so one code path serves
/// both, parameterised by the names and offsets here.
struct Level {
    /// What this level proves: "batch", "bundle".
    name: &'static str,
    /// What it aggregates: "chunk", "batch"; `subs` is the plural, `count_field` names the count.
    sub: &'static str,
    subs: &'static str,
    count_field: &'static str,
    /// Instance field each sub-proof contributes to the list at `list_at`.
    listed: &'static str,
    list_at: usize,
    kind: u16,
    instance: fn(&[F]) -> Result<Vec<u8>>,
    pi_len: fn(usize) -> usize,
    pi_count: usize,
    pi_blocks: usize,
}

const BATCH: Level = Level {
    name: "batch",
    sub: "chunk",
    subs: "chunks",
    count_field: "chunk_count",
    listed: "data_hash",
    list_at: BATCH_DATA_HASHES,
    kind: KIND_BATCH,
    instance: batch_instance,
    pi_len: batch_pi::len,
    pi_count: batch_pi::COUNT,
    pi_blocks: batch_pi::BLOCKS,
};

const BUNDLE: Level = Level {
    name: "bundle",
    sub: "batch",
    subs: "batches",
    count_field: "batch_count",
    listed: "commitment",
    list_at: BUNDLE_BATCH_COMMITMENTS,
    kind: KIND_BUNDLE,
    instance: bundle_instance,
    pi_len: bundle_pi::len,
    pi_count: bundle_pi::COUNT,
    pi_blocks: bundle_pi::BLOCKS,
};

/// What a batch or bundle task says of each of its sub-proofs (a chunk info, a batch info).
trait SubInfo {
    fn roots(&self) -> &Roots;
    fn block_count(&self) -> u64;
    /// The sub-proof's entry in the instance's list (a chunk's data hash, a batch's commitment).
    fn listed(&self) -> &[u8; 32];
    /// The sub-proof's public inputs as the task determines them, when it determines all of them.
    fn public_inputs(&self) -> Option<Vec<F>>;
}

impl SubInfo for Expected {
    fn roots(&self) -> &Roots {
        &self.roots
    }
    fn block_count(&self) -> u64 {
        self.block_count
    }
    fn listed(&self) -> &[u8; 32] {
        &self.data_hash
    }
    fn public_inputs(&self) -> Option<Vec<F>> {
        Expected::public_inputs(self)
    }
}

/// Parses a non-empty JSON array of task infos: `field` names the argument ("chunk_infos"),
/// `noun` one item ("chunk info").
fn task_infos<T>(
    json_text: &str,
    field: &str,
    noun: &str,
    parse: impl Fn(Value, &str) -> Result<T>,
) -> Result<Vec<T>> {
    match serde_json::from_str(json_text)
        .map_err(|e| anyhow!("{field}: expected a JSON array of {noun}: {e}"))?
    {
        Value::Array(a) if !a.is_empty() => a
            .into_iter()
            .enumerate()
            .map(|(k, v)| parse(v, &format!("{field}[{k}]")))
            .collect(),
        _ => bail!("{field}: expected a non-empty JSON array of {noun}"),
    }
}

/// The sub-proofs a batch or bundle prover is given: AggProof objects or JSON strings holding one,
/// at least one.
fn sub_proofs(l: &Level, json_text: &str) -> Result<Vec<AggBytes>> {
    let items = agg_proofs(json_text, l.sub)?;
    if items.is_empty() {
        bail!("empty {}: no {} proofs", l.name, l.sub);
    }
    Ok(items)
}

/// Checks each sub-proof (`check`; a failure names the sub-proof by its given position), then
/// returns what `check` returned in chain order by the sub-proofs' roots (or refuses, naming the
/// break), all of one chain id.
fn chain_ordered<T>(
    l: &Level,
    items: &[AggBytes],
    check: impl Fn(&AggBytes) -> Result<T>,
) -> Result<Vec<T>> {
    let what = l.sub;
    let mut checked = Vec::with_capacity(items.len());
    let mut roots = Vec::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        checked.push(check(p).with_context(|| format!("{what} proof {i} invalid"))?);
        roots.push(roots_of(&p.instance)?);
    }
    let order = chain_order(&roots, what)?;
    for w in order.windows(2) {
        let (a, b) = (&roots[w[0]], &roots[w[1]]);
        if a.chain_id != b.chain_id {
            bail!(
                "chain_id differs between {what} proofs {} and {} ({} vs {})",
                w[0],
                w[1],
                a.chain_id,
                b.chain_id
            );
        }
    }
    let mut slots: Vec<Option<T>> = checked.into_iter().map(Some).collect();
    Ok(order.iter().filter_map(|&i| slots[i].take()).collect())
}

/// Proves a batch or bundle circuit (`data`, witness `pw`) of `store`'s fork over `count`
/// sub-proofs whose public inputs are `sub_pis`, and returns its AggProof JSON.
fn prove_agg(
    store: &Store,
    l: &Level,
    data: &Data,
    pw: PartialWitness<F>,
    count: usize,
    sub_pis: &[Vec<F>],
) -> Result<String> {
    let proof = prove_guarded(l.name, || data.prove(pw))?;
    let instance = (l.instance)(&proof.public_inputs)?;
    let commitment = hash_bytes(&batch_commitment(sub_pis));
    if instance[104..136] != commitment {
        bail!("internal error: {} commitment mismatch", l.name);
    }
    Ok(AggBytes {
        proof: frame(l.kind, count as u16, &proof.to_bytes()),
        final_pair: [agg_pi_hash(&instance, l.list_at)?, commitment].concat(),
        block_count: proof.public_inputs[l.pi_blocks].to_canonical_u64(),
        instance,
        vk: store.key(l.kind)?.to_vec(),
    }
    .to_json())
}

/// Decodes a proof payload for verifier data `vd` and checks its bytes are canonical. (The
/// AggProof's `vk`, its fork's key, is checked by `check_vk`; the circuit's own key is `vd`'s,
/// which the cryptographic verification uses.)
fn decode_proof(payload: &[u8], vd: &VerifierData) -> Result<Proof> {
    let proof = Proof::from_bytes(payload.to_vec(), &vd.common)?;
    if proof.to_bytes() != payload {
        bail!("proof bytes are not canonical");
    }
    Ok(proof)
}

/// Checks every byte of a batch or bundle AggProof over `count` sub-proofs against its proof and
/// the verifier data of its circuit, short of the (costly) cryptographic verification, which the
/// caller runs after comparing the instance with what the task determines.
fn check_agg(
    l: &Level,
    p: &AggBytes,
    payload: &[u8],
    count: usize,
    vd: &VerifierData,
) -> Result<Proof> {
    let proof = decode_proof(payload, vd)?;
    let pis = &proof.public_inputs;
    if pis.len() != (l.pi_len)(count) || pis[l.pi_count] != F::from_canonical_usize(count) {
        bail!("{} public inputs malformed", l.name);
    }
    if p.instance != (l.instance)(pis)? {
        bail!("instance does not match the proof's public inputs");
    }
    if p.final_pair[..]
        != [
            agg_pi_hash(&p.instance, l.list_at)?,
            p.instance[104..136].try_into()?,
        ]
        .concat()[..]
    {
        bail!("final_pair does not match the instance");
    }
    if p.block_count != pis[l.pi_blocks].to_canonical_u64() {
        bail!("block_count does not match the proof's public inputs");
    }
    Ok(proof)
}

/// Compares a batch or bundle instance with the ordered infos of the task's sub-proofs.
fn compare_agg<T: SubInfo>(l: &Level, p: &AggBytes, task: &[T]) -> Result<()> {
    let n = task.len();
    let i = &p.instance;
    count_eq(l.count_field, u64_at(i, 136)?, n as u64)?;
    for (k, w) in task.windows(2).enumerate() {
        let (a, b) = (w[0].roots(), w[1].roots());
        if a.post != b.prev || a.chain_id != b.chain_id {
            bail!(
                "{}_infos: task {} {k} and {} do not chain",
                l.sub,
                l.subs,
                k + 1
            );
        }
    }
    compare_roots(i, task[0].roots(), task[n - 1].roots())?;
    let blocks: u64 = task.iter().map(T::block_count).sum();
    count_eq("block_count", u64_at(i, 144)?, blocks)?;
    count_eq("block_count (AggProof)", p.block_count, blocks)?;
    for (k, e) in task.iter().enumerate() {
        let at = l.list_at + 32 * k;
        field_eq(
            &format!("{} {k} {}", l.sub, l.listed),
            &i[at..at + 32],
            e.listed(),
        )?;
    }
    // When the task determines every sub-proof's public inputs (a chunk info with its commitment
    // and length, always a batch info), all of them (block counts, each chunk's data hash down the
    // levels) are bound through the commitment.
    if let Some(all) = task
        .iter()
        .map(T::public_inputs)
        .collect::<Option<Vec<_>>>()
    {
        let c = hash_bytes(&batch_commitment(&all));
        field_eq("commitment", &i[104..136], &c)?;
    }
    Ok(())
}

pub fn gen_batch_proof(store: &Store, chunk_proofs_json: &str) -> Result<String> {
    let items = sub_proofs(&BATCH, chunk_proofs_json)?;
    // The coordinator's query for a batch's chunk proofs has no ORDER BY: put them in chain order.
    let checked = chain_ordered(&BATCH, &items, |p| check_chunk(store, p, None))?;
    let n = checked.len();
    let circuit = store.batch(n)?;
    let inputs: Vec<(Proof, VerifierOnly, usize)> = checked
        .into_iter()
        .map(|(p, j)| (p, store.wrap_vds[j].verifier_only.clone(), j))
        .collect();
    let chunk_pis: Vec<Vec<F>> = inputs.iter().map(|i| i.0.public_inputs.clone()).collect();
    let pw = set_batch_witness(&circuit.targets, &inputs)?;
    prove_agg(store, &BATCH, &circuit.data, pw, n, &chunk_pis)
}

/// Chunk count of a batch AggProof, from its frame (no other check).
fn batch_chunk_count(p: &AggBytes) -> Result<usize> {
    let (n, _) = unframe(KIND_BATCH, &p.proof)?;
    if n == 0 {
        bail!("batch of 0 chunks");
    }
    Ok(n as usize)
}

/// Checks every byte of a batch AggProof against its proof and the batch key for its chunk count
/// (`check_agg`); returns the proof, its chunk count and the verifier data to verify it with.
fn check_batch(store: &Store, p: &AggBytes) -> Result<(Proof, usize, Arc<VerifierData>)> {
    let n = batch_chunk_count(p)?;
    let (_, payload) = unframe(KIND_BATCH, &p.proof)?;
    check_vk(store, KIND_BATCH, p)?;
    let vd = store.batch_vd(n)?;
    let proof = check_agg(&BATCH, p, payload, n, &vd)?;
    Ok((proof, n, vd))
}

/// Verifies a batch proof as a proof of the task whose ordered chunk infos are `chunk_infos_json`.
pub fn verify_batch_proof(store: &Store, proof_json: &str, chunk_infos_json: &str) -> Result<()> {
    let task = task_infos(chunk_infos_json, "chunk_infos", "chunk info", |v, what| {
        Expected::from_value(v, what, store.fork)
    })?;
    let p = AggBytes::from_json(proof_json)?;
    // Before any circuit is loaded or built for the proof's chunk count.
    count_eq(
        "chunk_count",
        batch_chunk_count(&p)? as u64,
        task.len() as u64,
    )?;
    let (proof, _, vd) = check_batch(store, &p)?;
    compare_agg(&BATCH, &p, &task)?;
    vd.verify(proof).context("proof does not verify")
}

/// Parses a JSON array of AggProof objects (or JSON strings holding one); `what` names the items.
fn agg_proofs(json_text: &str, what: &str) -> Result<Vec<AggBytes>> {
    let items: Vec<Value> = match serde_json::from_str(json_text)
        .map_err(|e| anyhow!("{what} proofs: expected a JSON array of AggProof: {e}"))?
    {
        Value::Array(a) => a,
        _ => bail!("{what} proofs: expected a JSON array of AggProof"),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            match v {
                Value::String(s) => AggBytes::from_json(&s),
                other => AggBytes::from_value(other),
            }
            .with_context(|| format!("{what} proof {i}"))
        })
        .collect()
}

/// Proves a bundle over batch AggProofs (Scroll's `batch_proofs`): each batch proof checked and
/// verified, put in chain order by its roots (or refused naming the break), one chain id, then the
/// bundle circuit for the batches' chunk counts in that order.
pub fn gen_bundle_proof(store: &Store, batch_proofs_json: &str) -> Result<String> {
    let items = sub_proofs(&BUNDLE, batch_proofs_json)?;
    if items.len() > MAX_BUNDLE_BATCHES {
        bail!(
            "bundle of {} batch proofs exceeds the maximum of {MAX_BUNDLE_BATCHES} per bundle \
             proof; split the bundle",
            items.len()
        );
    }
    let checked = chain_ordered(&BUNDLE, &items, |p| {
        let (proof, n, vd) = check_batch(store, p)?;
        vd.verify(proof.clone()).context("proof does not verify")?;
        Ok((proof, n))
    })?;
    let sizes: Vec<usize> = checked.iter().map(|c| c.1).collect();
    let circuit = store.bundle(&sizes)?;
    let batch_pis: Vec<Vec<F>> = checked.iter().map(|c| c.0.public_inputs.clone()).collect();
    let proofs: Vec<Proof> = checked.into_iter().map(|c| c.0).collect();
    let pw = set_bundle_witness(&circuit.targets, &proofs)?;
    prove_agg(store, &BUNDLE, &circuit.data, pw, sizes.len(), &batch_pis)
}

/// Batch info as a bundle task determines it: what the task's (already verified) batch proof
/// attests, i.e. its instance decoded (`batch_info_of_instance`; roller.ffi builds the same).
#[derive(Deserialize, Clone)]
struct BatchInfoJson {
    chain_id: u64,
    prev_state_root: String,
    post_state_root: String,
    withdraw_root: String,
    commitment: String,
    chunk_count: u64,
    block_count: u64,
    data_hashes: Vec<String>,
}

struct ExpectedBatch {
    roots: Roots,
    commitment: [u8; 32],
    block_count: u64,
    data_hashes: Vec<[u8; 32]>,
}

impl ExpectedBatch {
    fn from_value(v: Value, what: &str) -> Result<Self> {
        let e: BatchInfoJson =
            serde_json::from_value(v).map_err(|e| anyhow!("{what}: batch info JSON: {e}"))?;
        let h = |s: &str, f: &str| parse_h256(s, &format!("{what}.{f}"));
        if e.chunk_count == 0 || e.chunk_count > u16::MAX as u64 {
            bail!("{what}.chunk_count: {} is not a batch size", e.chunk_count);
        }
        if e.data_hashes.len() as u64 != e.chunk_count {
            bail!(
                "{what}.data_hashes: {} hashes for chunk_count {}",
                e.data_hashes.len(),
                e.chunk_count
            );
        }
        Ok(ExpectedBatch {
            roots: task_roots(
                e.chain_id,
                [&e.prev_state_root, &e.post_state_root, &e.withdraw_root],
                what,
            )?,
            commitment: h(&e.commitment, "commitment")?,
            block_count: e.block_count,
            data_hashes: e
                .data_hashes
                .iter()
                .enumerate()
                .map(|(k, d)| h(d, &format!("data_hashes[{k}]")))
                .collect::<Result<_>>()?,
        })
    }

    /// The batch circuit's public inputs this batch info determines (all of them).
    fn public_inputs(&self) -> Vec<F> {
        let mut v = limbed(&self.roots, &[]);
        v.extend(commitment_elems(&self.commitment));
        v.push(F::from_canonical_usize(self.data_hashes.len()));
        v.push(F::from_canonical_u64(self.block_count));
        for d in &self.data_hashes {
            v.extend_from_slice(&limbs_of(d));
        }
        v
    }
}

/// Batch info JSON of a batch instance (what a bundle verifier takes per batch); `block_count`
/// is the batch AggProof's.
pub fn batch_info_of_instance(instance: &[u8], block_count: u64) -> Result<Value> {
    if instance.len() < BATCH_DATA_HASHES
        || !(instance.len() - BATCH_DATA_HASHES).is_multiple_of(32)
    {
        bail!("batch instance of {} bytes is malformed", instance.len());
    }
    let r = roots_of(instance)?;
    Ok(json!({
        "chain_id": r.chain_id,
        "prev_state_root": hex(&r.prev),
        "post_state_root": hex(&r.post),
        "withdraw_root": hex(&r.withdraw),
        "commitment": hex(&instance[104..136]),
        "chunk_count": u64_at(instance, 136)?,
        "block_count": block_count,
        "data_hashes": instance[BATCH_DATA_HASHES..].chunks(32).map(hex).collect::<Vec<_>>(),
    }))
}

impl SubInfo for ExpectedBatch {
    fn roots(&self) -> &Roots {
        &self.roots
    }
    fn block_count(&self) -> u64 {
        self.block_count
    }
    fn listed(&self) -> &[u8; 32] {
        &self.commitment
    }
    fn public_inputs(&self) -> Option<Vec<F>> {
        Some(ExpectedBatch::public_inputs(self))
    }
}

/// Verifies a bundle proof as a proof of the task whose ordered batch infos are
/// `batch_infos_json` (one per batch proof of the task, in chain order).
pub fn verify_bundle_proof(store: &Store, proof_json: &str, batch_infos_json: &str) -> Result<()> {
    let task = task_infos(
        batch_infos_json,
        "batch_infos",
        "batch info",
        ExpectedBatch::from_value,
    )?;
    let p = AggBytes::from_json(proof_json)?;
    let (k, payload) = unframe(KIND_BUNDLE, &p.proof)?;
    check_vk(store, KIND_BUNDLE, &p)?;
    let k = k as usize;
    count_eq("batch_count", k as u64, task.len() as u64)?;
    // The circuit is the one the task determines: a proof of the circuit over batches of other
    // sizes does not decode or verify under its key, and is refused below.
    let sizes: Vec<usize> = task.iter().map(|e| e.data_hashes.len()).collect();
    check_bundle_shape(&sizes)?;
    let vd = store.bundle_vd(&sizes)?;
    let proof = check_agg(&BUNDLE, &p, payload, k, &vd)?;
    compare_agg(&BUNDLE, &p, &task)?;
    vd.verify(proof).context("proof does not verify")
}

/// Chunk info as JSON (Scroll's `block_traces_to_chunk_info`) under `fork`'s codec: no ordering
/// checks, no proof. `chain_id` as for `gen_chunk_proof`; `popped_before`: L1 messages popped
/// before the chunk (the previous chunk's `l1_messages_popped_after` in a batch), None derives it
/// from the traces. Unknown counts (a chunk without L1 messages, no count given nor traced) are
/// null.
pub fn chunk_info_json(
    traces_json: &str,
    chain_id: Option<u64>,
    popped_before: Option<u64>,
    fork: Fork,
) -> Result<String> {
    let blocks = parse_traces(traces_json)?;
    let info = chunk_info(&blocks, chain_id, popped_before, fork)?;
    let commitment = bucket_for(info.preimage.len()).map(|j| {
        hex(&hash_bytes(&commitment_of(
            fork,
            &info.preimage,
            &info.hash_counts,
            j,
        )))
    });
    Ok(json!({
        "fork": fork.name(),
        "codec_version": fork.codec(),
        "chain_id": info.chain_id,
        "prev_state_root": hex(&info.prev_state_root),
        "post_state_root": hex(&info.post_state_root),
        "withdraw_root": hex(&info.withdraw_root),
        "data_hash": hex(&info.data_hash),
        "tx_bytes_hash": info.tx_bytes_hash.map(|h| hex(&h)),
        "public_input_hash": hex(&info.pi_hash),
        "commitment": commitment,
        "len": info.preimage.len(),
        "block_count": info.block_count,
        "tx_count": info.tx_count,
        "num_l1_messages": info.l1_messages,
        "l1_messages_popped_before": info.l1_popped_before,
        "l1_messages_popped_after": info.l1_popped_after,
    })
    .to_string())
}
