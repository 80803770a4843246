//! BlockTrace parsing and Scroll's chunk info (coordinator-protocol.md section 10), following
//! Scroll's codec v0 (da-codec `codecv0`): block context = number u64 | timestamp u64 | base fee
//! u256 | gas limit u64 | tx count u16 | L1 message count u16; data hash = keccak(every context's
//! first 58 bytes | per block: L1 message hashes, then the other tx hashes).
//!
//! Failure model: every malformed or inconsistent input (chain ids that disagree with each other or
//! with the caller, L1 queue indexes below what was popped, counts over u16) is an error naming
//! the block and field; nothing is guessed from the process environment.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use sha3::{Digest, Keccak256};

/// Transaction type of an L1 message.
pub const L1_MESSAGE_TX_TYPE: u64 = 126;
/// Bytes of the fixed header of the commitment preimage: chain id, prev, post and withdraw roots.
pub const HEADER_LEN: usize = 8 + 32 * 3;
/// Bytes of a block context that enter the data hash (the L1 message count is left out).
pub const CONTEXT_HASHED_LEN: usize = 58;

/// The members of a BlockTrace the prover uses; everything else is ignored.
#[derive(Deserialize)]
struct RawTrace {
    #[serde(rename = "chainID")]
    chain_id: Option<Value>,
    header: RawHeader,
    #[serde(default)]
    transactions: Vec<RawTx>,
    #[serde(rename = "storageTrace")]
    storage_trace: RawStorageTrace,
    withdraw_trie_root: Option<String>,
    #[serde(rename = "withdrawTrieRoot")]
    withdraw_trie_root_old: Option<String>,
    /// L1 messages popped before this block (traces from 2024 on); absent in older traces.
    #[serde(rename = "startL1QueueIndex")]
    start_l1_queue_index: Option<Value>,
}

#[derive(Deserialize)]
struct RawHeader {
    number: Value,
    timestamp: Value,
    #[serde(rename = "gasLimit")]
    gas_limit: Value,
    #[serde(rename = "stateRoot")]
    state_root: String,
    /// EIP-1559 base fee; absent (zero in the codec) in pre-Curie mainnet traces.
    #[serde(rename = "baseFeePerGas")]
    base_fee: Option<Value>,
}

#[derive(Deserialize)]
struct RawTx {
    #[serde(rename = "type", default)]
    tx_type: Option<Value>,
    nonce: Option<Value>,
    #[serde(rename = "txHash")]
    tx_hash: String,
}

#[derive(Deserialize)]
struct RawStorageTrace {
    #[serde(rename = "rootBefore")]
    root_before: String,
}

/// One block reduced to what the chunk statement needs.
#[derive(Clone, Debug)]
pub struct Block {
    pub number: u64,
    pub timestamp: u64,
    pub gas_limit: u64,
    /// Base fee as a big-endian u256 (zero when the header has none, as Scroll's codec does).
    pub base_fee: [u8; 32],
    pub chain_id: Option<u64>,
    /// `startL1QueueIndex` of the trace, when it carries one.
    pub start_l1_queue_index: Option<u64>,
    pub root_before: [u8; 32],
    pub state_root: [u8; 32],
    pub withdraw_root: [u8; 32],
    /// (type, nonce, hash) in trace order.
    pub txs: Vec<(u64, u64, [u8; 32])>,
}

/// Scroll chunk info plus the byte string the in-circuit commitment covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub chain_id: u64,
    pub prev_state_root: [u8; 32],
    pub post_state_root: [u8; 32],
    pub withdraw_root: [u8; 32],
    pub data_hash: [u8; 32],
    pub pi_hash: [u8; 32],
    pub block_count: usize,
    pub tx_count: usize,
    /// L1 message count per block (last two bytes of each context; not part of the data hash).
    pub l1_messages: Vec<u16>,
    /// Total L1 messages popped before the chunk, and after it (the next chunk's "before").
    pub l1_popped_before: u64,
    pub l1_popped_after: u64,
    /// header (chain id | prev | post | withdraw) followed by the data-hash preimage.
    pub preimage: Vec<u8>,
}

fn parse_u64(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| anyhow!("{what}: not a u64")),
        Value::String(s) => {
            let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
            match hex {
                Some(h) if !h.is_empty() => {
                    u64::from_str_radix(h, 16).with_context(|| format!("{what}: bad hex {s:?}"))
                }
                Some(_) => bail!("{what}: empty hex"),
                None => s
                    .parse()
                    .with_context(|| format!("{what}: bad number {s:?}")),
            }
        }
        _ => bail!("{what}: expected a number"),
    }
}

/// Parses a 0x hex string of at most 32 bytes, left-padded (old traces carry 20-byte zero roots).
pub fn parse_h256(s: &str, what: &str) -> Result<[u8; 32]> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if h.len() > 64 || !h.len().is_multiple_of(2) {
        bail!("{what}: bad hash length in {s:?}");
    }
    let mut out = [0u8; 32];
    let off = 32 - h.len() / 2;
    for i in 0..h.len() / 2 {
        out[off + i] = u8::from_str_radix(&h[2 * i..2 * i + 2], 16)
            .with_context(|| format!("{what}: bad hex in {s:?}"))?;
    }
    Ok(out)
}

/// Parses a JSON quantity (0x hex of any length up to 32 bytes, or a number) as a big-endian u256.
fn parse_u256(v: &Value, what: &str) -> Result<[u8; 32]> {
    match v {
        Value::String(s) => {
            let h = s.strip_prefix("0x").unwrap_or(s);
            let padded = if h.len() % 2 == 1 {
                format!("0{h}")
            } else {
                h.to_string()
            };
            parse_h256(&padded, what)
        }
        other => {
            let n = parse_u64(other, what)?;
            let mut out = [0u8; 32];
            out[24..].copy_from_slice(&n.to_be_bytes());
            Ok(out)
        }
    }
}

impl Block {
    fn from_raw(raw: RawTrace, idx: usize) -> Result<Self> {
        let ctx = |f: &str| format!("trace {idx}: {f}");
        let withdraw = raw
            .withdraw_trie_root
            .or(raw.withdraw_trie_root_old)
            .ok_or_else(|| anyhow!("trace {idx}: no withdraw_trie_root"))?;
        let chain_id = match raw.chain_id {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_u64(&v, &ctx("chainID"))?),
        };
        let base_fee = match &raw.header.base_fee {
            None | Some(Value::Null) => [0u8; 32],
            Some(v) => parse_u256(v, &ctx("header.baseFeePerGas"))?,
        };
        let start_l1_queue_index = match &raw.start_l1_queue_index {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_u64(v, &ctx("startL1QueueIndex"))?),
        };
        let mut txs = Vec::with_capacity(raw.transactions.len());
        for (t, tx) in raw.transactions.iter().enumerate() {
            let ty = match &tx.tx_type {
                None | Some(Value::Null) => 0,
                Some(v) => parse_u64(v, &ctx(&format!("tx {t} type")))?,
            };
            let nonce = match &tx.nonce {
                None | Some(Value::Null) => 0,
                Some(v) => parse_u64(v, &ctx(&format!("tx {t} nonce")))?,
            };
            txs.push((
                ty,
                nonce,
                parse_h256(&tx.tx_hash, &ctx(&format!("tx {t} txHash")))?,
            ));
        }
        if txs.len() > u16::MAX as usize {
            bail!("trace {idx}: too many transactions");
        }
        Ok(Block {
            number: parse_u64(&raw.header.number, &ctx("header.number"))?,
            timestamp: parse_u64(&raw.header.timestamp, &ctx("header.timestamp"))?,
            gas_limit: parse_u64(&raw.header.gas_limit, &ctx("header.gasLimit"))?,
            base_fee,
            chain_id,
            start_l1_queue_index,
            root_before: parse_h256(&raw.storage_trace.root_before, &ctx("rootBefore"))?,
            state_root: parse_h256(&raw.header.state_root, &ctx("header.stateRoot"))?,
            withdraw_root: parse_h256(&withdraw, &ctx("withdraw root"))?,
            txs,
        })
    }

    /// Bytes of this block's encoding that enter the commitment preimage.
    pub fn encoded_len(&self) -> usize {
        CONTEXT_HASHED_LEN + 32 * self.txs.len()
    }
}

/// Parses a JSON array of BlockTrace objects (no ordering checks).
pub fn parse_traces(json: &str) -> Result<Vec<Block>> {
    let raws: Vec<RawTrace> =
        serde_json::from_str(json).context("traces: expected a JSON array of BlockTrace")?;
    if raws.is_empty() {
        bail!("empty chunk: no block traces");
    }
    raws.into_iter()
        .enumerate()
        .map(|(i, r)| Block::from_raw(r, i))
        .collect()
}

/// Rejects blocks that are not consecutive (number + 1, state roots chaining).
pub fn check_contiguous(blocks: &[Block]) -> Result<()> {
    for w in blocks.windows(2) {
        if w[1].number != w[0].number.wrapping_add(1) {
            bail!(
                "traces out of order: block {} follows block {} (need consecutive block numbers)",
                w[1].number,
                w[0].number
            );
        }
        if w[1].root_before != w[0].state_root {
            bail!(
                "traces not contiguous: block {} rootBefore differs from block {} stateRoot",
                w[1].number,
                w[0].number
            );
        }
    }
    Ok(())
}

/// Chain id: the traces' `chainID` (all equal) and the caller's (the task's or the roller's
/// configuration) must agree; either alone suffices. Never read from the environment: a prover
/// must not be able to prove for another chain than the task's.
pub fn chain_id_of(blocks: &[Block], configured: Option<u64>) -> Result<u64> {
    let mut found: Option<u64> = None;
    for b in blocks {
        if let Some(c) = b.chain_id {
            if let Some(f) = found.filter(|&f| f != c) {
                bail!(
                    "chain_id: traces disagree (block {} says {c}, earlier blocks {f})",
                    b.number
                );
            }
            found = Some(c);
        }
    }
    match (found, configured) {
        (Some(t), Some(c)) if t != c => {
            bail!("chain_id: traces say {t}, the task/configuration says {c}")
        }
        (Some(c), _) | (None, Some(c)) => Ok(c),
        (None, None) => bail!("chain_id: traces carry no chainID and no chain id was passed"),
    }
}

pub fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Public input hash = keccak(chain id BE8 | prev | post | withdraw | data hash).
pub fn pi_hash(
    chain_id: u64,
    prev: &[u8; 32],
    post: &[u8; 32],
    wd: &[u8; 32],
    dh: &[u8; 32],
) -> [u8; 32] {
    let mut buf = Vec::with_capacity(8 + 128);
    buf.extend_from_slice(&chain_id.to_be_bytes());
    for part in [prev, post, wd, dh] {
        buf.extend_from_slice(part);
    }
    keccak(&buf)
}

/// L1 messages popped before the chunk when the caller does not say: the first block's
/// `startL1QueueIndex`, else the first L1 message's queue index (the chunk starts popping there),
/// else 0 (a chunk without L1 messages pops none, so the value does not matter).
fn default_popped_before(blocks: &[Block]) -> u64 {
    blocks
        .first()
        .and_then(|b| b.start_l1_queue_index)
        .or_else(|| {
            blocks
                .iter()
                .flat_map(|b| b.txs.iter())
                .find(|t| t.0 == L1_MESSAGE_TX_TYPE)
                .map(|t| t.1)
        })
        .unwrap_or(0)
}

/// Scroll's `NumL1Messages`: last queue index in the block - popped before + 1, no wrap-around.
fn l1_messages_of(b: &Block, popped: u64) -> Result<u16> {
    let Some(&(_, last, _)) = b.txs.iter().rev().find(|t| t.0 == L1_MESSAGE_TX_TYPE) else {
        return Ok(0);
    };
    if last < popped {
        bail!(
            "block {}: l1 message queue index {last} is below the {popped} messages popped before it",
            b.number
        );
    }
    let n = last - popped + 1;
    u16::try_from(n).map_err(|_| {
        anyhow!(
            "block {}: num_l1_messages {n} exceeds u16 (queue index {last}, popped before {popped})",
            b.number
        )
    })
}

/// Chunk info of blocks in the given order. `chain_id`: the task's/configuration's, checked against
/// the traces'. `popped_before`: L1 messages popped before the chunk (the previous chunk's
/// `l1_popped_after` inside a batch); None derives it from the traces.
pub fn chunk_info(
    blocks: &[Block],
    chain_id: Option<u64>,
    popped_before: Option<u64>,
) -> Result<ChunkInfo> {
    let (first, last) = match (blocks.first(), blocks.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => bail!("empty chunk: no block traces"),
    };
    let chain_id = chain_id_of(blocks, chain_id)?;
    let popped_before = popped_before.unwrap_or_else(|| default_popped_before(blocks));
    let mut data = Vec::new();
    let mut l1_messages = Vec::with_capacity(blocks.len());
    let mut popped = popped_before;
    for b in blocks {
        let n_l1 = l1_messages_of(b, popped)?;
        popped += u64::from(n_l1);
        l1_messages.push(n_l1);
        data.extend_from_slice(&b.number.to_be_bytes());
        data.extend_from_slice(&b.timestamp.to_be_bytes());
        data.extend_from_slice(&b.base_fee);
        data.extend_from_slice(&b.gas_limit.to_be_bytes());
        data.extend_from_slice(&(b.txs.len() as u16).to_be_bytes());
    }
    for b in blocks {
        let l1 = b.txs.iter().filter(|t| t.0 == L1_MESSAGE_TX_TYPE);
        let l2 = b.txs.iter().filter(|t| t.0 != L1_MESSAGE_TX_TYPE);
        for t in l1.chain(l2) {
            data.extend_from_slice(&t.2);
        }
    }
    let data_hash = keccak(&data);
    let (prev, post, wd) = (first.root_before, last.state_root, last.withdraw_root);
    let mut preimage = Vec::with_capacity(HEADER_LEN + data.len());
    preimage.extend_from_slice(&chain_id.to_be_bytes());
    preimage.extend_from_slice(&prev);
    preimage.extend_from_slice(&post);
    preimage.extend_from_slice(&wd);
    preimage.extend_from_slice(&data);
    Ok(ChunkInfo {
        chain_id,
        prev_state_root: prev,
        post_state_root: post,
        withdraw_root: wd,
        data_hash,
        pi_hash: pi_hash(chain_id, &prev, &post, &wd, &data_hash),
        block_count: blocks.len(),
        tx_count: blocks.iter().map(|b| b.txs.len()).sum(),
        l1_messages,
        l1_popped_before: popped_before,
        l1_popped_after: popped,
        preimage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, txs: Vec<(u64, u64, [u8; 32])>) -> Block {
        Block {
            number,
            timestamp: 7,
            gas_limit: 9,
            base_fee: [0; 32],
            chain_id: Some(5),
            start_l1_queue_index: None,
            root_before: [1; 32],
            state_root: [1; 32],
            withdraw_root: [2; 32],
            txs,
        }
    }

    fn l1(queue_index: u64) -> (u64, u64, [u8; 32]) {
        (L1_MESSAGE_TX_TYPE, queue_index, [queue_index as u8; 32])
    }

    #[test]
    fn short_hashes_are_left_padded() {
        let h = parse_h256("0x0000000000000000000000000000000000000001", "x").unwrap();
        assert_eq!(h[31], 1);
        assert!(h[..31].iter().all(|&b| b == 0));
        assert!(parse_h256("0x123", "x").is_err());
        assert!(parse_h256("0xzz", "x").is_err());
        assert_eq!(
            parse_u256(&Value::String("0x7".into()), "x").unwrap()[31],
            7
        );
    }

    #[test]
    fn l1_messages_count_from_queue_indices() {
        let blocks = vec![
            block(1, vec![l1(3), (0, 0, [9; 32])]),
            block(2, vec![]),
            block(3, vec![l1(5)]),
        ];
        let info = chunk_info(&blocks, None, Some(0)).unwrap();
        assert_eq!(info.l1_messages, vec![4, 0, 2]); // queue index 4 skipped, still counted
        assert_eq!((info.l1_popped_before, info.l1_popped_after), (0, 6));
        assert_eq!(info.preimage.len(), HEADER_LEN + 3 * 58 + 3 * 32);
        // L1 message hashes come before the block's other transactions.
        let hashes = &info.preimage[HEADER_LEN + 3 * 58..];
        assert_eq!(&hashes[..32], &[3; 32]);
        assert_eq!(&hashes[32..64], &[9; 32]);
        assert_eq!(info.chain_id, 5);
        // Without a caller's count: the chunk starts popping at its first L1 message.
        let derived = chunk_info(&blocks, None, None).unwrap();
        assert_eq!(derived.l1_messages, vec![1, 0, 2]);
        // A following chunk carries popped_after over.
        let next = chunk_info(
            &[block(4, vec![l1(6), l1(7)])],
            None,
            Some(info.l1_popped_after),
        );
        assert_eq!(next.unwrap().l1_messages, vec![2]);
    }

    #[test]
    fn mainnet_queue_indexes_do_not_wrap() {
        // Mainnet queue indexes pass 65535: the count is relative to what was popped before.
        let mut b = block(1, vec![l1(900_000), l1(900_001)]);
        b.start_l1_queue_index = Some(900_000);
        let info = chunk_info(&[b.clone()], None, None).unwrap();
        assert_eq!(info.l1_messages, vec![2]);
        assert_eq!(info.l1_popped_after, 900_002);
        let e = chunk_info(&[b.clone()], None, Some(0)).unwrap_err();
        assert!(format!("{e}").contains("exceeds u16"), "{e}");
        let e = chunk_info(&[b], None, Some(900_002)).unwrap_err();
        assert!(format!("{e}").contains("below"), "{e}");
    }

    #[test]
    fn chain_id_comes_from_traces_or_caller_never_env() {
        let mut b = block(1, vec![]);
        assert_eq!(chunk_info(&[b.clone()], Some(5), None).unwrap().chain_id, 5);
        let e = chunk_info(&[b.clone()], Some(6), None).unwrap_err();
        assert!(format!("{e}").contains("chain_id"), "{e}");
        b.chain_id = None;
        assert_eq!(chunk_info(&[b.clone()], Some(6), None).unwrap().chain_id, 6);
        let e = chunk_info(&[b], None, None).unwrap_err();
        assert!(format!("{e}").contains("no chainID"), "{e}");
    }

    #[test]
    fn ordering_checks() {
        assert!(check_contiguous(&[block(1, vec![]), block(2, vec![])]).is_ok());
        assert!(check_contiguous(&[block(2, vec![]), block(1, vec![])]).is_err());
        assert!(check_contiguous(&[block(1, vec![]), block(3, vec![])]).is_err());
        let mut b = block(2, vec![]);
        b.root_before = [7; 32];
        assert!(check_contiguous(&[block(1, vec![]), b]).is_err());
        assert!(parse_traces("[]").is_err());
        assert!(parse_traces("{").is_err());
    }

    fn shipped_trace(name: &str) -> Block {
        use std::io::Read;
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../roller/devnet/data/traces")
            .join(format!("blockTrace_{name}.json.gz"));
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).expect("trace"))
            .read_to_string(&mut s)
            .expect("gunzip");
        parse_traces(&format!("[{s}]")).expect("trace").remove(0)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Upstream vectors: scroll-tech/da-codec encoding/codecv0_test.go (TestCodecV0BlockEncode,
    /// TestCodecV0ChunkHash), single-block chunks with 0 L1 messages popped before, over the same
    /// 2023 traces as roller/devnet/data/traces (base fees 0x1de9 and 0x1a2c enter the hash).
    /// Only blockTrace_02 is the same file in both; da-codec's 03..07 carry other or more
    /// transactions than the trimmed copies of the scroll repository (a3c18b99a) we ship (e.g. 04:
    /// 12 txs there, 2 here): for those the context is compared without its tx count (number,
    /// timestamp, base fee, gas limit and the L1 message count from queue indexes), and the data
    /// hash not at all.
    #[test]
    fn codec_v0_upstream_vectors() {
        let cases = [
            ("02", "00000000000000020000000063807b2a0000000000000000000000000000000000000000000000000000000000001de9000355418d1e818400020000", "de642c68122634b33fa1e6e4243b17be3bfd0dc6f996f204ef6d7522516bd840"),
            ("03", "00000000000000030000000063807b2d0000000000000000000000000000000000000000000000000000000000001a2c0003546c3cbb39e500010000", ""),
            ("04", "000000000000000d00000000646b6e13000000000000000000000000000000000000000000000000000000000000000000000000007a1200000c000b", ""),
            ("05", "000000000000001100000000646b6ed0000000000000000000000000000000000000000000000000000000000000000000000000007a1200002a002a", ""),
            ("06", "000000000000001100000000646b6ed0000000000000000000000000000000000000000000000000000000000000000000000000007a1200000a000a", ""),
            ("07", "000000000000001100000000646b6ed0000000000000000000000000000000000000000000000000000000000000000000000000007a120001010101", ""),
        ];
        for (name, context, data_hash) in cases {
            let b = shipped_trace(name);
            // 02..04 carry no chainID (any works: it is not in the data hash), 05..07 say 222222.
            let chain = b.chain_id.or(Some(534352));
            let info = chunk_info(&[b], chain, Some(0)).expect(name);
            let mut ctx = info.preimage[HEADER_LEN..HEADER_LEN + CONTEXT_HASHED_LEN].to_vec();
            ctx.extend_from_slice(&info.l1_messages[0].to_be_bytes());
            let ctx = hex(&ctx);
            if data_hash.is_empty() {
                // Same block, other transactions: all but the tx count (hex chars 112..116).
                assert_eq!(
                    ctx[..112],
                    context[..112],
                    "block context of blockTrace_{name}"
                );
                assert_eq!(ctx[116..], context[116..], "L1 count of blockTrace_{name}");
            } else {
                assert_eq!(ctx, context, "block context of blockTrace_{name}");
                let dh = hex(&info.data_hash);
                assert_eq!(dh, data_hash, "data hash of blockTrace_{name}");
            }
        }
    }
}
