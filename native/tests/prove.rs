//! End-to-end tests of the prover on the traces shipped in roller/devnet/data.
//! Circuit data is built on the first run into native/target/test-params (or ROLLER_TEST_PARAMS).

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use roller_prover::prover::{
    gen_batch_proof, gen_chunk_proof, verify_batch_proof, verify_chunk_proof,
};
use roller_prover::store::Store;
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

fn chunk_proof(blocks: &[Value]) -> String {
    gen_chunk_proof(&store(), &json(blocks)).expect("chunk proof")
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
    verify_chunk_proof(&store(), &p).expect("valid proof");
    for byte in [3, 20, 500, 5000, 40_000] {
        assert!(
            verify_chunk_proof(&store(), &tamper(&p, "proof", byte)).is_err(),
            "proof byte {byte}"
        );
    }
    for byte in [0, 10, 50, 110, 140, 170, 205] {
        assert!(
            verify_chunk_proof(&store(), &tamper(&p, "instance", byte)).is_err(),
            "instance byte {byte}"
        );
    }
    assert!(verify_chunk_proof(&store(), &tamper(&p, "final_pair", 7)).is_err());
    assert!(verify_chunk_proof(&store(), &tamper(&p, "vk", 7)).is_err());
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
    verify_chunk_proof(&again, &p).expect("a reloaded verifier accepts the proof");
}

#[test]
fn bad_inputs_are_errors() {
    let s = store();
    let e = gen_chunk_proof(&s, &json(&[fixture("03"), fixture("02")])).unwrap_err();
    assert!(format!("{e:#}").contains("out of order"), "{e:#}");
    let e = gen_chunk_proof(&s, "[]").unwrap_err();
    assert!(format!("{e:#}").contains("empty"), "{e:#}");
    assert!(gen_chunk_proof(&s, "{not json").is_err());
    assert!(gen_chunk_proof(&s, "[{\"header\":{}}]").is_err());
    assert!(gen_batch_proof(&s, "[]").is_err());
    assert!(gen_batch_proof(&s, "nope").is_err());
    assert!(verify_chunk_proof(&s, "{}").is_err());
    assert!(verify_batch_proof(&s, "{\"proof\":\"AAAA\"}").is_err());
}

#[test]
fn batch_over_contiguous_chunks_verifies_and_gaps_are_refused() {
    let a = chunk_proof(&mainnet_blocks(2640, 2));
    let b = chunk_proof(&mainnet_blocks(2642, 3));
    let c = chunk_proof(&mainnet_blocks(2646, 1));
    let s = store();
    let batch = gen_batch_proof(&s, &format!("[{a},{b}]")).expect("batch proof");
    let v: Value = serde_json::from_str(&batch).expect("json");
    assert_eq!(v["block_count"], 5);
    verify_batch_proof(&s, &batch).expect("valid batch");
    assert!(verify_batch_proof(&s, &tamper(&batch, "proof", 999)).is_err());
    assert!(verify_batch_proof(&s, &tamper(&batch, "instance", 50)).is_err());
    let e = gen_batch_proof(&s, &format!("[{b},{c}]")).unwrap_err();
    assert!(format!("{e:#}").contains("not contiguous"), "{e:#}");
    let e = gen_batch_proof(&s, &format!("[{a},{}]", tamper(&b, "proof", 777))).unwrap_err();
    assert!(format!("{e:#}").contains("invalid"), "{e:#}");
}
