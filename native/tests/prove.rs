//! End-to-end tests of the prover on the traces shipped in roller/devnet/data.
//! Circuit data of two forks (homestead, darwinV2) is built on the first run into
//! native/target/test-params (or ROLLER_TEST_PARAMS).

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use roller_prover::circuits::{build_bundle, ChunkWitness};
use roller_prover::ffi;
use roller_prover::fork::Fork;
use roller_prover::prover::{
    batch_info_of_instance, chunk_aggproof, chunk_info_json, gen_batch_proof, gen_bundle_proof,
    gen_chunk_proof, prepare_chunk, prove_chunk_witness, verify_batch_proof, verify_bundle_proof,
    verify_chunk_proof,
};
use roller_prover::store::Store;
use roller_prover::trace::pi_hash;
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../roller/devnet/data")
}

fn read_gz(path: PathBuf) -> Value {
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .expect("gunzip");
    serde_json::from_str(&s).expect("trace JSON")
}

fn fixture(name: &str) -> Value {
    read_gz(
        data_dir()
            .join("traces")
            .join(format!("blockTrace_{name}.json.gz")),
    )
}

fn mainnet_blocks(from: u64, n: u64) -> Vec<Value> {
    (from..from + n)
        .map(|b| read_gz(data_dir().join(format!("chain-534352/block_{b}.json.gz"))))
        .collect()
}

/// ROLLER_TEST_PARAMS, else native/target/test-params (built on the first run, reused after).
fn params_dir() -> PathBuf {
    std::env::var("ROLLER_TEST_PARAMS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-params"))
}

/// The homestead (codec v0) store most tests prove with.
fn store() -> Arc<Store> {
    store_of(Fork::Homestead)
}

/// One store per fork for the whole test binary.
fn store_of(fork: Fork) -> Arc<Store> {
    static STORES: Mutex<BTreeMap<Fork, Arc<Store>>> = Mutex::new(BTreeMap::new());
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    stores
        .entry(fork)
        .or_insert_with(|| Arc::new(Store::open(&params_dir(), fork).expect("open store")))
        .clone()
}

fn json(v: &[Value]) -> String {
    serde_json::to_string(v).expect("serialize")
}

/// Chain id of the 2023 `traces/` fixtures, which carry no chainID (the task/config supplies it).
const FIXTURE_CHAIN: Option<u64> = Some(534352);

fn chunk_proof(blocks: &[Value]) -> String {
    gen_chunk_proof(&store(), &json(blocks), FIXTURE_CHAIN).expect("chunk proof")
}

/// The chunk info a task over these blocks determines (what the coordinator recomputes).
fn info(blocks: &[Value]) -> String {
    chunk_info_json(&json(blocks), FIXTURE_CHAIN, None, Fork::Homestead).expect("chunk info")
}

fn infos(chunks: &[&[Value]]) -> String {
    format!(
        "[{}]",
        chunks.iter().map(|c| info(c)).collect::<Vec<_>>().join(",")
    )
}

fn err_text<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// Flips one bit of a base64 field of an AggProof JSON.
fn tamper(proof_json: &str, field: &str, byte: usize) -> String {
    let mut v: Value = serde_json::from_str(proof_json).expect("json");
    let mut bytes = STANDARD
        .decode(v[field].as_str().expect("field"))
        .expect("b64");
    let i = byte % bytes.len();
    bytes[i] ^= 1;
    v[field] = Value::String(STANDARD.encode(bytes));
    v.to_string()
}

/// A task's infos (JSON array) with hash `field` of info `k` replaced by another hash.
fn other_hash(task: &str, k: usize, field: &str) -> String {
    let mut v: Value = serde_json::from_str(task).expect("json");
    v[k][field] = Value::String(format!("0x{}", "11".repeat(32)));
    v.to_string()
}

#[test]
fn chunk_proof_verifies_and_tampering_fails() {
    let p = chunk_proof(&[fixture("02"), fixture("03")]);
    let v: Value = serde_json::from_str(&p).expect("json");
    assert_eq!(v["block_count"], 2);
    for f in ["proof", "final_pair"] {
        let n = STANDARD
            .decode(v[f].as_str().expect("b64"))
            .expect("b64")
            .len();
        assert!(n > 0 && n.is_multiple_of(32), "{f} length {n}");
    }
    let task = info(&[fixture("02"), fixture("03")]);
    verify_chunk_proof(&store(), &p, &task).expect("valid proof");
    for byte in [3, 20, 500, 5000, 40_000] {
        assert!(
            verify_chunk_proof(&store(), &tamper(&p, "proof", byte), &task).is_err(),
            "proof byte {byte}"
        );
    }
    for byte in [0, 10, 50, 110, 140, 170, 205, 213] {
        assert!(
            verify_chunk_proof(&store(), &tamper(&p, "instance", byte), &task).is_err(),
            "instance byte {byte}"
        );
    }
    assert!(verify_chunk_proof(&store(), &tamper(&p, "final_pair", 7), &task).is_err());
    assert!(verify_chunk_proof(&store(), &tamper(&p, "vk", 7), &task).is_err());
    let mut forged_count: Value = serde_json::from_str(&p).expect("json");
    forged_count["block_count"] = 1000.into();
    assert!(verify_chunk_proof(&store(), &forged_count.to_string(), &task).is_err());
}

#[test]
fn cached_keys_reload_identically() {
    let s = store();
    let again = Store::open(&params_dir(), Fork::Homestead).expect("reopen");
    for (a, b) in s.wrap_vds.iter().zip(&again.wrap_vds) {
        assert_eq!(
            a.verifier_only.circuit_digest,
            b.verifier_only.circuit_digest
        );
    }
    assert_eq!(s.allowed, again.allowed);
    assert_eq!(
        (s.chunk_key, s.batch_key, s.bundle_key),
        (again.chunk_key, again.batch_key, again.bundle_key)
    );
    let p = chunk_proof(&[fixture("02")]);
    verify_chunk_proof(&again, &p, &info(&[fixture("02")]))
        .expect("a reloaded verifier accepts the proof");
}

#[test]
fn bad_inputs_are_errors() {
    let s = store();
    let e = gen_chunk_proof(&s, &json(&[fixture("03"), fixture("02")]), FIXTURE_CHAIN).unwrap_err();
    assert!(format!("{e:#}").contains("out of order"), "{e:#}");
    let e = gen_chunk_proof(&s, "[]", FIXTURE_CHAIN).unwrap_err();
    assert!(format!("{e:#}").contains("empty"), "{e:#}");
    assert!(gen_chunk_proof(&s, "{not json", FIXTURE_CHAIN).is_err());
    assert!(gen_chunk_proof(&s, "[{\"header\":{}}]", FIXTURE_CHAIN).is_err());
    // No chain id from the traces nor the caller: refused (the environment is never read).
    let e = gen_chunk_proof(&s, &json(&[fixture("02")]), None).unwrap_err();
    assert!(format!("{e:#}").contains("chain_id"), "{e:#}");
    // Mainnet traces say 534352: another chain id from the task is refused.
    let e = gen_chunk_proof(&s, &json(&mainnet_blocks(2640, 1)), Some(222222)).unwrap_err();
    assert!(format!("{e:#}").contains("chain_id"), "{e:#}");
    assert!(gen_batch_proof(&s, "[]").is_err());
    assert!(gen_batch_proof(&s, "nope").is_err());
    assert!(verify_chunk_proof(&s, "{}", &info(&[fixture("02")])).is_err());
    assert!(verify_batch_proof(&s, "{\"proof\":\"AAAA\"}", "[]").is_err());
}

/// Blocks over the largest bucket are an error naming counts and bytes, never a proof of a prefix.
#[test]
fn overflowing_chunks_are_refused_not_truncated() {
    let base = fixture("02");
    let root = base["header"]["stateRoot"].clone();
    let blocks: Vec<Value> = (0..300u64)
        .map(|i| {
            let mut b = base.clone();
            b["header"]["number"] = Value::String(format!("{:#x}", 1000 + i));
            b["storageTrace"]["rootBefore"] = root.clone();
            b
        })
        .collect();
    let e = err_text(prepare_chunk(
        &json(&blocks),
        FIXTURE_CHAIN,
        Fork::Homestead,
    ));
    assert!(e.contains("chunk too large: 300 blocks"), "{e}");
    assert!(e.contains("bytes"), "{e}");
}

/// A valid proof of other blocks is refused, naming the field that differs.
#[test]
fn proof_of_other_blocks_is_refused_naming_the_field() {
    let p = chunk_proof(&mainnet_blocks(2640, 2));
    verify_chunk_proof(&store(), &p, &info(&mainnet_blocks(2640, 2))).expect("own task");
    let e = err_text(verify_chunk_proof(
        &store(),
        &p,
        &info(&mainnet_blocks(2642, 2)),
    ));
    assert!(e.contains("prev_state_root"), "{e}");
    let e = err_text(verify_chunk_proof(
        &store(),
        &p,
        &info(&mainnet_blocks(2640, 3)),
    ));
    assert!(e.contains("post_state_root"), "{e}");
}

/// Witness-level forgeries: satisfiable ones (roots, data hash are not keccak-bound in-circuit) are
/// refused by the verifier against the task; the others cannot be proved at all.
#[test]
fn forged_witnesses_are_refused() {
    let s = store();
    let blocks = mainnet_blocks(2640, 2);
    let task = info(&blocks);
    let honest = prepare_chunk(&json(&blocks), None, Fork::Homestead).expect("chunk info");
    let counts = honest.hash_counts.clone();
    assert_eq!(counts, vec![1, 1]);
    let prove_counts =
        |preimage: &[u8], hash_counts: &[u16], dh: &[u8; 32], block_count: usize, padding: u8| {
            let r: [u8; 104] = preimage[..104].try_into().expect("header");
            let chain = u64::from_be_bytes(r[..8].try_into().expect("chain"));
            let root = |o: usize| -> [u8; 32] { r[o..o + 32].try_into().expect("root") };
            let pi = pi_hash(chain, &root(8), &root(40), &root(72), dh, None);
            let w = ChunkWitness {
                preimage,
                hash_counts,
                data_hash: dh,
                pi_hash: &pi,
                block_count,
                padding,
            };
            prove_chunk_witness(&s, &w).and_then(|(p, bucket)| chunk_aggproof(&s, &p, bucket))
        };
    let prove = |preimage: &[u8], dh: &[u8; 32], block_count: usize, padding: u8| {
        prove_counts(preimage, &counts, dh, block_count, padding)
    };
    // Forged post state root in the committed bytes.
    let mut forged = honest.preimage.clone();
    forged[40..72].copy_from_slice(&[0xab; 32]);
    let p = prove(&forged, &honest.data_hash, 2, 0).expect("satisfiable in-circuit");
    let e = err_text(verify_chunk_proof(&s, &p, &task));
    assert!(e.contains("post_state_root"), "{e}");
    // Forged data hash over the honest bytes.
    let p = prove(&honest.preimage, &[7; 32], 2, 0).expect("satisfiable in-circuit");
    let e = err_text(verify_chunk_proof(&s, &p, &task));
    assert!(e.contains("data_hash"), "{e}");
    // Forged block count over the honest bytes: the layout constraint fails.
    let e = err_text(prove(&honest.preimage, &honest.data_hash, 3, 0));
    assert!(e.contains("proving failed"), "{e}");
    // Zero data bytes claiming 1000 blocks.
    let e = err_text(prove(&honest.preimage[..104], &honest.data_hash, 1000, 0));
    assert!(e.contains("proving failed"), "{e}");
    // Non-zero bytes after len.
    let e = err_text(prove(&honest.preimage, &honest.data_hash, 2, 1));
    assert!(e.contains("proving failed"), "{e}");
    // Hashes per block: more than a block's tx count (1 each here), a count after the last block,
    // or a total that does not match len are all unsatisfiable.
    for forged in [&[2, 0][..], &[0, 2], &[1, 1, 1], &[1], &[1, 0, 1]] {
        let e = err_text(prove_counts(
            &honest.preimage,
            forged,
            &honest.data_hash,
            2,
            0,
        ));
        assert!(e.contains("proving failed"), "{forged:?}: {e}");
    }
}

#[test]
fn batch_over_contiguous_chunks_verifies_and_gaps_are_refused() {
    let a = chunk_proof(&mainnet_blocks(2640, 2));
    let b = chunk_proof(&mainnet_blocks(2642, 3));
    let c = chunk_proof(&mainnet_blocks(2646, 1));
    let s = store();
    let (ba, bb) = (mainnet_blocks(2640, 2), mainnet_blocks(2642, 3));
    let task = infos(&[&ba, &bb]);
    let batch = gen_batch_proof(&s, &format!("[{a},{b}]")).expect("batch proof");
    let v: Value = serde_json::from_str(&batch).expect("json");
    assert_eq!(v["block_count"], 5);
    verify_batch_proof(&s, &batch, &task).expect("valid batch");
    assert!(verify_batch_proof(&s, &tamper(&batch, "proof", 999), &task).is_err());
    assert!(verify_batch_proof(&s, &tamper(&batch, "instance", 50), &task).is_err());
    // Another task: one chunk only, or other blocks.
    let e = err_text(verify_batch_proof(&s, &batch, &infos(&[&ba])));
    assert!(e.contains("chunk_count"), "{e}");
    let bc = mainnet_blocks(2642, 4);
    let e = err_text(verify_batch_proof(&s, &batch, &infos(&[&ba, &bc])));
    assert!(e.contains("post_state_root"), "{e}");
    // The wording batch and bundle verifiers share, with the batch's names in it.
    let e = err_text(verify_batch_proof(&s, &batch, &infos(&[&bb, &ba])));
    assert!(
        e.contains("chunk_infos: task chunks 0 and 1 do not chain"),
        "{e}"
    );
    // A task whose chunk info's data hash is not the one its public_input_hash was computed from
    // is inconsistent, and refused as such; without public_input_hash it is another task.
    let e = err_text(verify_batch_proof(
        &s,
        &batch,
        &other_hash(&task, 1, "data_hash"),
    ));
    assert!(
        e.contains("chunk_infos[1].public_input_hash 0x") && e.contains("is not the hash"),
        "{e}"
    );
    let mut other: Value = serde_json::from_str(&other_hash(&task, 1, "data_hash")).expect("json");
    other[1]
        .as_object_mut()
        .expect("object")
        .remove("public_input_hash");
    let e = err_text(verify_batch_proof(&s, &batch, &other.to_string()));
    assert!(
        e.contains("instance field chunk 1 data_hash differs from the task"),
        "{e}"
    );
    // Out of chain order (the coordinator's query has no ORDER BY): put in order by roots.
    let swapped = gen_batch_proof(&s, &format!("[{b},{a}]")).expect("reordered batch");
    verify_batch_proof(&s, &swapped, &task).expect("reordered batch answers the task");
    // No chain at all: refused, naming the break.
    let e = err_text(gen_batch_proof(&s, &format!("[{b},{c}]")));
    assert!(
        e.contains("not in chain order: chunk 0 post state root"),
        "{e}"
    );
    let e = err_text(gen_batch_proof(
        &s,
        &format!("[{a},{}]", tamper(&b, "proof", 777)),
    ));
    assert!(e.contains("invalid"), "{e}");
}

/// Batch proofs over mainnet blocks 2640.. for the bundle tests, proved once:
/// a = 2640-2644 (chunks 2640x2, 2642x3), b = 2645-2646 (2645x1, 2646x1): a then b chain;
/// a2 = 2640-2645 (2640x2, 2642x4): another batch from the same start, ending elsewhere.
struct Batches {
    a: String,
    b: String,
    a2: String,
}

fn batches() -> &'static Batches {
    static B: OnceLock<Batches> = OnceLock::new();
    B.get_or_init(|| {
        let c1 = chunk_proof(&mainnet_blocks(2640, 2));
        let c2 = chunk_proof(&mainnet_blocks(2642, 3));
        let c3 = chunk_proof(&mainnet_blocks(2645, 1));
        let c4 = chunk_proof(&mainnet_blocks(2646, 1));
        let c2b = chunk_proof(&mainnet_blocks(2642, 4));
        let s = store();
        let batch = |x: &str, y: &str| gen_batch_proof(&s, &format!("[{x},{y}]")).expect("batch");
        Batches {
            a: batch(&c1, &c2),
            b: batch(&c3, &c4),
            a2: batch(&c1, &c2b),
        }
    })
}

/// The batch info a bundle task over this (verified) batch proof determines.
fn batch_info(batch_json: &str) -> Value {
    let v: Value = serde_json::from_str(batch_json).expect("json");
    let instance = STANDARD
        .decode(v["instance"].as_str().expect("instance"))
        .expect("b64");
    batch_info_of_instance(&instance, v["block_count"].as_u64().expect("block_count"))
        .expect("batch info")
}

fn batch_infos(batch_jsons: &[&str]) -> String {
    Value::Array(batch_jsons.iter().map(|b| batch_info(b)).collect()).to_string()
}

#[test]
fn bundle_over_chained_batches_verifies_and_binds_order_and_count() {
    let Batches { a, b, .. } = batches();
    let s = store();
    let task = batch_infos(&[a, b]);
    let bundle = gen_bundle_proof(&s, &format!("[{a},{b}]")).expect("bundle proof");
    let v: Value = serde_json::from_str(&bundle).expect("json");
    assert_eq!(v["block_count"], 7);
    verify_bundle_proof(&s, &bundle, &task).expect("valid bundle");
    assert!(verify_bundle_proof(&s, &tamper(&bundle, "proof", 999), &task).is_err());
    assert!(verify_bundle_proof(&s, &tamper(&bundle, "instance", 50), &task).is_err());
    assert!(verify_bundle_proof(&s, &tamper(&bundle, "final_pair", 3), &task).is_err());
    // Wrong count: the task has one batch only.
    let e = err_text(verify_bundle_proof(&s, &bundle, &batch_infos(&[a])));
    assert!(e.contains("batch_count"), "{e}");
    // Wrong order in the task: its batches do not chain.
    let e = err_text(verify_bundle_proof(&s, &bundle, &batch_infos(&[b, a])));
    assert!(
        e.contains("batch_infos: task batches 0 and 1 do not chain"),
        "{e}"
    );
    let e = err_text(verify_bundle_proof(
        &s,
        &bundle,
        &other_hash(&task, 1, "commitment"),
    ));
    assert!(
        e.contains("instance field batch 1 commitment differs from the task"),
        "{e}"
    );
    // Batch proofs given out of chain order are put in order by their roots.
    let swapped = gen_bundle_proof(&s, &format!("[{b},{a}]")).expect("reordered bundle");
    verify_bundle_proof(&s, &swapped, &task).expect("reordered bundle answers the task");
    // Batches as JSON strings (how a coordinator may embed them) are accepted too.
    let strings = Value::Array(vec![Value::String(a.clone()), Value::String(b.clone())]);
    gen_bundle_proof(&s, &strings.to_string()).expect("bundle of JSON strings");
}

#[test]
fn bundle_of_another_batch_and_padding_are_refused() {
    let Batches { a, b, a2 } = batches();
    let s = store();
    let bundle = gen_bundle_proof(&s, &format!("[{a}]")).expect("bundle of one batch");
    verify_bundle_proof(&s, &bundle, &batch_infos(&[a])).expect("valid bundle");
    // A valid bundle of another batch (same start and size, other blocks): the field is named.
    let e = err_text(verify_bundle_proof(&s, &bundle, &batch_infos(&[a2])));
    assert!(e.contains("post_state_root"), "{e}");
    // A task whose one batch differs only in a data hash the roots do not show: the commitment
    // over every batch public input refuses it.
    let mut other: Value = batch_info(a);
    other["data_hashes"][1] = Value::String(format!("0x{}", "11".repeat(32)));
    let e = err_text(verify_bundle_proof(
        &s,
        &bundle,
        &Value::Array(vec![other]).to_string(),
    ));
    assert!(e.contains("instance field commitment"), "{e}");
    // Padding: a batch repeated to fill the bundle does not chain and is refused, naming the break.
    let e = err_text(gen_bundle_proof(&s, &format!("[{a},{a}]")));
    assert!(
        e.contains("batch proofs not in chain order: batch 0"),
        "{e}"
    );
    // Non-zero bytes in the proof frame's padding.
    let mut v: Value = serde_json::from_str(&bundle).expect("json");
    let mut bytes = STANDARD
        .decode(v["proof"].as_str().expect("proof"))
        .expect("b64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    v["proof"] = Value::String(STANDARD.encode(bytes));
    let e = err_text(verify_bundle_proof(&s, &v.to_string(), &batch_infos(&[a])));
    assert!(e.contains("padding") || e.contains("payload length"), "{e}");
    // A gap between batches (a2 ends after block 2645, b starts at 2645).
    let e = err_text(gen_bundle_proof(&s, &format!("[{a2},{b}]")));
    assert!(e.contains("not in chain order"), "{e}");
    // Proof of another kind in place of a batch proof, and a tampered batch proof.
    let chunk = chunk_proof(&mainnet_blocks(2645, 1));
    let e = err_text(gen_bundle_proof(&s, &format!("[{chunk}]")));
    assert!(
        e.contains("batch proof 0 invalid") && e.contains("kind 0"),
        "{e}"
    );
    let e = err_text(gen_bundle_proof(
        &s,
        &format!("[{a},{}]", tamper(b, "proof", 777)),
    ));
    assert!(e.contains("batch proof 1 invalid"), "{e}");
    // A batch proof is not a bundle proof.
    let e = err_text(verify_bundle_proof(&s, a, &batch_infos(&[a])));
    assert!(e.contains("kind 1"), "{e}");
}

#[test]
fn bundle_shape_errors_are_named() {
    let s = store();
    let e = err_text(gen_bundle_proof(&s, "[]"));
    assert!(e.contains("empty bundle"), "{e}");
    let e = err_text(gen_bundle_proof(&s, "{}"));
    assert!(e.contains("expected a JSON array"), "{e}");
    let a = &batches().a;
    let many = format!("[{}]", vec![a.as_str(); 65].join(","));
    let e = err_text(gen_bundle_proof(&s, &many));
    assert!(e.contains("exceeds the maximum of 64"), "{e}");
    let e = err_text(verify_bundle_proof(&s, a, "[]"));
    assert!(e.contains("non-empty JSON array"), "{e}");
    let mut info = batch_info(a);
    info["chunk_count"] = Value::from(3);
    let e = err_text(verify_bundle_proof(
        &s,
        a,
        &Value::Array(vec![info]).to_string(),
    ));
    assert!(e.contains("2 hashes for chunk_count 3"), "{e}");
}

/// A coordinator and a roller build their bundle circuits apart: the key must be a function of
/// the batch sizes (and the cached batch keys) alone, so a fresh build equals the cached one.
#[test]
fn bundle_keys_are_deterministic() {
    let s = store();
    let cached = s.bundle_vd(&[2]).expect("bundle vd");
    let batch = s.batch_vd(2).expect("batch vd");
    let (fresh, _) = build_bundle(&[(&batch.common, &batch.verifier_only)]);
    assert_eq!(
        fresh.verifier_only.circuit_digest,
        cached.verifier_only.circuit_digest
    );
    assert_eq!(fresh.common, cached.common);
}

/// Part of the chunk-info contract the circuit must accept: a block that skips L1 messages. Trace
/// 04 pops L1 message 10 after skipping 0..=9: its context says 12 transactions (11 L1 messages,
/// 10 skipped, + 1 L2), but only 2 hashes follow (codec v0) or 1 (codec v1+). Proved with 0 L1
/// messages popped before (startL1QueueIndex 0 in the trace, as 2024+ traces carry it; the task's
/// chunk info takes the same count from the caller) and verified against the task; the data
/// hash is da-codec's (encoding/codecv0_test.go TestCodecV0ChunkHash and codecv4_test.go
/// TestCodecV4ChunkHash, see trace.rs `codec_v0_upstream_vectors`,
/// `codec_v1_to_v4_upstream_chunk_hashes`).
#[test]
fn chunk_with_skipped_l1_messages_proves_and_verifies() {
    let plain = fixture("04");
    assert!(plain.get("startL1QueueIndex").is_none());
    let mut traced = plain.clone();
    traced["startL1QueueIndex"] = 0.into();
    for (fork, data_hash, len) in [
        (
            Fork::Homestead,
            "0x9e643c8a9203df542e39d9bfdcb07c99575b3c3d557791329fef9d83cc4147d0",
            104 + 58 + 2 * 32,
        ),
        (
            Fork::DarwinV2,
            "0x059c6451e83012b405c7e1a38818369012a4a1c87d7d699366eac946d0410d73",
            104 + 58 + 32 + 32,
        ),
    ] {
        let s = store_of(fork);
        let task = chunk_info_json(
            &json(std::slice::from_ref(&plain)),
            FIXTURE_CHAIN,
            Some(0),
            fork,
        )
        .expect("chunk info");
        let t: Value = serde_json::from_str(&task).expect("json");
        assert_eq!(t["data_hash"], data_hash, "{fork}");
        assert_eq!(t["num_l1_messages"], serde_json::json!([11]), "{fork}");
        assert_eq!(t["len"], len, "{fork}");
        assert_eq!(t["fork"], fork.name());
        assert_eq!(t["tx_bytes_hash"].is_null(), fork.codec() == 0);
        let p = gen_chunk_proof(&s, &json(std::slice::from_ref(&traced)), FIXTURE_CHAIN)
            .expect("proof");
        verify_chunk_proof(&s, &p, &task).expect("answers its task");
        let v: Value = serde_json::from_str(&p).expect("json");
        let instance = STANDARD
            .decode(v["instance"].as_str().expect("instance"))
            .expect("b64");
        assert_eq!(
            format!("0x{}", hex(&instance[104..136])),
            data_hash,
            "{fork}"
        );
        assert_eq!(
            format!("0x{}", hex(&instance[136..168])),
            t["public_input_hash"].as_str().expect("pi hash")
        );
        assert_eq!(
            u64::from_be_bytes(instance[200..208].try_into().unwrap()),
            len
        );
        // Another count of skipped messages is another chunk: refused by the data hash.
        let other = chunk_info_json(
            &json(std::slice::from_ref(&plain)),
            FIXTURE_CHAIN,
            Some(10),
            fork,
        )
        .expect("chunk info");
        let e = err_text(verify_chunk_proof(&s, &p, &other));
        assert!(
            e.contains("instance field data_hash differs"),
            "{fork}: {e}"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Calls an ABI function returning char*: Ok(the string) or Err(prover_last_error()).
fn c_result(p: *mut c_char) -> Result<String, String> {
    let take = |p: *mut c_char| {
        // SAFETY: p is a non-NULL string this library returned; it is freed once, right after.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: as above.
        unsafe { ffi::free_c_chars(p) };
        s
    };
    if p.is_null() {
        Err(take(ffi::prover_last_error()))
    } else {
        Ok(take(p))
    }
}

fn last_error() -> String {
    c_result(ffi::prover_last_error()).unwrap_or_default()
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// Two forks initialised in one process through the C ABI: each proves a chunk with its own
/// circuits and key; each fork's verifier accepts only its own fork's proofs; a batch of one fork
/// refuses the other fork's chunk proof naming it; an unknown or uninitialised fork is refused.
#[test]
fn two_forks_in_one_process() {
    // Built (first run) or loaded through the test stores first, so the ABI's own stores only load.
    store_of(Fork::Homestead);
    store_of(Fork::DarwinV2);
    let dir = c(params_dir().to_str().expect("utf-8 path"));
    let (h, d) = (c("homestead"), c("darwinv2"));
    // SAFETY (every call below): NUL-terminated arguments, results freed by c_result.
    unsafe {
        for fork in [&h, &d] {
            assert_eq!(
                ffi::init_chunk_prover(dir.as_ptr(), fork.as_ptr()),
                0,
                "{}",
                last_error()
            );
            assert_eq!(ffi::init_chunk_verifier(dir.as_ptr(), fork.as_ptr()), 0);
        }
        assert_eq!(
            ffi::init_batch_prover(dir.as_ptr(), c("DarwinV2").as_ptr()),
            0
        );
        // Unknown fork: named, with the known ones.
        assert_ne!(
            ffi::init_chunk_prover(dir.as_ptr(), c("euclid").as_ptr()),
            0
        );
        assert_eq!(
            last_error(),
            "unknown fork \"euclid\"; known forks: homestead, bernoulli, curie, darwin, darwinV2"
        );
        let forks = c_result(ffi::prover_forks()).expect("forks");
        assert_eq!(
            forks,
            r#"["homestead","bernoulli","curie","darwin","darwinV2"]"#
        );

        let blocks = c(&json(&mainnet_blocks(2645, 1)));
        let chain = 534352;
        // A fork not initialised: refused, naming it.
        let e = c_result(ffi::gen_chunk_proof(
            blocks.as_ptr(),
            chain,
            c("curie").as_ptr(),
        ))
        .expect_err("curie is not initialised");
        assert!(
            e.starts_with("chunk prover of fork curie not initialised (initialised for: "),
            "{e}"
        );
        assert!(e.contains("homestead") && e.contains("darwinV2"), "{e}");

        let mut proofs = vec![];
        for fork in [&h, &d] {
            let p = c_result(ffi::gen_chunk_proof(blocks.as_ptr(), chain, fork.as_ptr()))
                .expect("chunk proof");
            let vk = c_result(ffi::get_vk(0, fork.as_ptr())).expect("vk");
            let v: Value = serde_json::from_str(&p).expect("json");
            assert_eq!(v["vk"], vk, "the proof carries its fork's chunk key");
            let info = c_result(ffi::block_traces_to_chunk_info(
                blocks.as_ptr(),
                chain,
                -1,
                fork.as_ptr(),
            ))
            .expect("chunk info");
            let pc = c(&p);
            let ic = c(&info);
            assert_eq!(
                ffi::verify_chunk_proof(pc.as_ptr(), ic.as_ptr(), fork.as_ptr()),
                1,
                "{}",
                last_error()
            );
            proofs.push((p, vk, info));
        }
        let [(ph, vkh, ih), (pd, vkd, id)] = &proofs[..] else {
            panic!("two proofs")
        };
        assert_ne!(vkh, vkd, "each fork's chunk circuits have their own key");
        // The same block under codec v0 and v4: another data hash (v4 hashes no L2 transaction).
        let dh = |i: &str| serde_json::from_str::<Value>(i).expect("json")["data_hash"].clone();
        assert_ne!(dh(ih), dh(id));

        // Each fork's verifier refuses the other fork's proof.
        let (phc, pdc, ihc, idc) = (c(ph), c(pd), c(ih), c(id));
        assert_eq!(
            ffi::verify_chunk_proof(phc.as_ptr(), idc.as_ptr(), d.as_ptr()),
            0
        );
        let e = last_error();
        assert!(
            e.starts_with("a chunk proof of fork homestead, not of fork darwinV2: its vk"),
            "{e}"
        );
        assert_eq!(
            ffi::verify_chunk_proof(pdc.as_ptr(), idc.as_ptr(), h.as_ptr()),
            0
        );
        assert!(
            last_error().starts_with("chunk_info.fork: a chunk of fork darwinV2, verified with"),
            "{}",
            last_error()
        );
        assert_eq!(
            ffi::verify_chunk_proof(pdc.as_ptr(), ihc.as_ptr(), h.as_ptr()),
            0
        );
        assert!(
            last_error().starts_with("a chunk proof of fork darwinV2, not of fork homestead"),
            "{}",
            last_error()
        );

        // A darwinV2 batch refuses the homestead chunk proof, naming its fork...
        let wrong = c(&format!("[{ph}]"));
        let e = c_result(ffi::gen_batch_proof(wrong.as_ptr(), d.as_ptr())).expect_err("refused");
        assert!(
            e.starts_with(
                "chunk proof 0 invalid: a chunk proof of fork homestead, not of fork darwinV2"
            ),
            "{e}"
        );
        // ... and proves over its own fork's chunk proof, with its own batch key.
        let right = c(&format!("[{pd}]"));
        let batch = c_result(ffi::gen_batch_proof(right.as_ptr(), d.as_ptr())).expect("batch");
        let v: Value = serde_json::from_str(&batch).expect("json");
        assert_eq!(
            v["vk"],
            c_result(ffi::get_vk(1, d.as_ptr())).expect("batch vk")
        );
        assert_eq!(v["block_count"], 1);
        // Keys are only given for what is initialised.
        let e = c_result(ffi::get_vk(1, h.as_ptr())).expect_err("no batch of homestead");
        assert_eq!(
            e,
            "no batch key of fork homestead: neither its batch prover nor its batch verifier is \
             initialised"
        );
        assert!(c_result(ffi::get_vk(2, d.as_ptr())).is_err());
    }
}

/// Every fork's circuits differ from every other's: the chunk circuit of each fork over the same
/// bucket has its own key (the fork tag in the commitment), so its wrap, batch and bundle keys
/// differ too. Built in memory (bucket 0 only) for all five forks.
#[test]
fn every_fork_has_its_own_chunk_circuit() {
    let digests: Vec<_> = Fork::ALL
        .iter()
        .map(|&f| {
            roller_prover::circuits::build_chunk(0, f)
                .0
                .verifier_only
                .circuit_digest
        })
        .collect();
    for i in 0..digests.len() {
        for j in i + 1..digests.len() {
            assert_ne!(
                digests[i],
                digests[j],
                "{} vs {}",
                Fork::ALL[i],
                Fork::ALL[j]
            );
        }
    }
}
