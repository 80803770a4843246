//! End-to-end tests of the prover on the traces shipped in roller/devnet/data.
//! Circuit data is built on the first run into native/target/test-params (or ROLLER_TEST_PARAMS).

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use roller_prover::circuits::ChunkWitness;
use roller_prover::prover::{
    chunk_aggproof, chunk_info_json, gen_batch_proof, gen_chunk_proof, prepare_chunk,
    prove_chunk_witness, verify_batch_proof, verify_chunk_proof,
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

fn store() -> Arc<Store> {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE
        .get_or_init(|| Arc::new(Store::open(&params_dir()).expect("open store")))
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
    chunk_info_json(&json(blocks), FIXTURE_CHAIN, None).expect("chunk info")
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
    let again = Store::open(&params_dir()).expect("reopen");
    for (a, b) in s.wrap_vds.iter().zip(&again.wrap_vds) {
        assert_eq!(
            a.verifier_only.circuit_digest,
            b.verifier_only.circuit_digest
        );
    }
    assert_eq!(s.allowed, again.allowed);
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
    let e = err_text(prepare_chunk(&json(&blocks), FIXTURE_CHAIN));
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
    let honest = prepare_chunk(&json(&blocks), None).expect("chunk info");
    let prove = |preimage: &[u8], dh: &[u8; 32], block_count: usize, padding: u8| {
        let r: [u8; 104] = preimage[..104].try_into().expect("header");
        let chain = u64::from_be_bytes(r[..8].try_into().expect("chain"));
        let root = |o: usize| -> [u8; 32] { r[o..o + 32].try_into().expect("root") };
        let pi = pi_hash(chain, &root(8), &root(40), &root(72), dh);
        let w = ChunkWitness {
            preimage,
            data_hash: dh,
            pi_hash: &pi,
            block_count,
            padding,
        };
        prove_chunk_witness(&s, &w).and_then(|(p, bucket)| chunk_aggproof(&s, &p, bucket))
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
