//! BlockTrace parsing and Scroll's chunk info (coordinator-protocol.md section 10).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use sha3::{Digest, Keccak256};

/// Chain id used when a trace carries no `chainID` (older traces) and env `ROLLER_CHAIN_ID` is unset.
pub const DEFAULT_CHAIN_ID: u64 = 534352;
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
}

#[derive(Deserialize)]
struct RawHeader {
    number: Value,
    timestamp: Value,
    #[serde(rename = "gasLimit")]
    gas_limit: Value,
    #[serde(rename = "stateRoot")]
    state_root: String,
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
    pub chain_id: Option<u64>,
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
    /// L1 message count per block (last two bytes of each context), with 0 popped before.
    pub l1_messages: Vec<u16>,
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
            chain_id,
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

/// Chain id: the traces' `chainID` (all equal), else env ROLLER_CHAIN_ID, else DEFAULT_CHAIN_ID.
fn chain_id_of(blocks: &[Block]) -> Result<u64> {
    let mut found: Option<u64> = None;
    for b in blocks {
        if let Some(c) = b.chain_id {
            if found.is_some_and(|f| f != c) {
                bail!(
                    "traces disagree on chainID ({} vs {c})",
                    found.unwrap_or_default()
                );
            }
            found = Some(c);
        }
    }
    if let Some(c) = found {
        return Ok(c);
    }
    match std::env::var("ROLLER_CHAIN_ID") {
        Ok(s) if !s.is_empty() => s.trim().parse().context("env ROLLER_CHAIN_ID"),
        _ => Ok(DEFAULT_CHAIN_ID),
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

/// Chunk info of blocks in the given order, with `popped_before` L1 messages popped before the chunk.
pub fn chunk_info(blocks: &[Block], popped_before: u64) -> Result<ChunkInfo> {
    let (first, last) = match (blocks.first(), blocks.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => bail!("empty chunk: no block traces"),
    };
    let chain_id = chain_id_of(blocks)?;
    let mut data = Vec::new();
    let mut l1_messages = Vec::with_capacity(blocks.len());
    let mut popped = popped_before;
    for b in blocks {
        let n_l1 = match b.txs.iter().rev().find(|t| t.0 == L1_MESSAGE_TX_TYPE) {
            Some(&(_, last_queue_index, _)) => {
                last_queue_index.wrapping_sub(popped).wrapping_add(1)
            }
            None => 0,
        };
        popped = popped.wrapping_add(n_l1);
        l1_messages.push(n_l1 as u16);
        data.extend_from_slice(&b.number.to_be_bytes());
        data.extend_from_slice(&b.timestamp.to_be_bytes());
        data.extend_from_slice(&[0u8; 32]);
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
            chain_id: Some(5),
            root_before: [1; 32],
            state_root: [1; 32],
            withdraw_root: [2; 32],
            txs,
        }
    }

    #[test]
    fn short_hashes_are_left_padded() {
        let h = parse_h256("0x0000000000000000000000000000000000000001", "x").unwrap();
        assert_eq!(h[31], 1);
        assert!(h[..31].iter().all(|&b| b == 0));
        assert!(parse_h256("0x123", "x").is_err());
        assert!(parse_h256("0xzz", "x").is_err());
    }

    #[test]
    fn l1_messages_count_from_queue_indices() {
        let l1 = |nonce| (L1_MESSAGE_TX_TYPE, nonce, [nonce as u8; 32]);
        let blocks = vec![
            block(1, vec![l1(3), (0, 0, [9; 32])]),
            block(2, vec![]),
            block(3, vec![l1(5)]),
        ];
        let info = chunk_info(&blocks, 0).unwrap();
        assert_eq!(info.l1_messages, vec![4, 0, 2]); // queue index 4 skipped, still counted
        assert_eq!(info.preimage.len(), HEADER_LEN + 3 * 58 + 3 * 32);
        // L1 message hashes come before the block's other transactions.
        let hashes = &info.preimage[HEADER_LEN + 3 * 58..];
        assert_eq!(&hashes[..32], &[3; 32]);
        assert_eq!(&hashes[32..64], &[9; 32]);
        assert_eq!(info.chain_id, 5);
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
}
