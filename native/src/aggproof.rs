//! AggProof JSON (coordinator-protocol.md section 3.4) and the byte layouts inside it.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use plonky2::field::types::PrimeField64;
use serde::{Deserialize, Serialize};

use crate::circuits::{batch_pi, bundle_pi, chunk_pi, F};

/// Proof framing: magic, kind, parameter, payload length, payload, zero padding to 32 bytes.
pub const MAGIC: &[u8; 4] = b"RLRP";
pub const KIND_CHUNK: u16 = 0;
pub const KIND_BATCH: u16 = 1;
pub const KIND_BUNDLE: u16 = 2;
const FRAME_HEADER: usize = 16;

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct AggProof {
    pub proof: Option<String>,
    pub instance: Option<String>,
    pub final_pair: Option<String>,
    pub vk: Option<String>,
    #[serde(default)]
    pub block_count: u64,
}

/// The four byte fields of an AggProof, decoded.
pub struct AggBytes {
    pub proof: Vec<u8>,
    pub instance: Vec<u8>,
    pub final_pair: Vec<u8>,
    pub vk: Vec<u8>,
    pub block_count: u64,
}

fn b64(field: &str, v: &Option<String>) -> Result<Vec<u8>> {
    let s = v
        .as_deref()
        .ok_or_else(|| anyhow!("AggProof: {field} missing"))?;
    STANDARD
        .decode(s)
        .map_err(|e| anyhow!("AggProof: {field} is not base64: {e}"))
}

impl AggBytes {
    pub fn from_value(v: serde_json::Value) -> Result<Self> {
        let p: AggProof = serde_json::from_value(v).map_err(|e| anyhow!("AggProof JSON: {e}"))?;
        Ok(AggBytes {
            proof: b64("proof", &p.proof)?,
            instance: b64("instance", &p.instance)?,
            final_pair: b64("final_pair", &p.final_pair)?,
            vk: b64("vk", &p.vk)?,
            block_count: p.block_count,
        })
    }

    pub fn from_json(s: &str) -> Result<Self> {
        Self::from_value(serde_json::from_str(s).map_err(|e| anyhow!("AggProof JSON: {e}"))?)
    }

    pub fn to_json(&self) -> String {
        let p = AggProof {
            proof: Some(STANDARD.encode(&self.proof)),
            instance: Some(STANDARD.encode(&self.instance)),
            final_pair: Some(STANDARD.encode(&self.final_pair)),
            vk: Some(STANDARD.encode(&self.vk)),
            block_count: self.block_count,
        };
        serde_json::to_string(&p).unwrap_or_default()
    }
}

pub fn frame(kind: u16, param: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&param.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().div_ceil(32) * 32, 0);
    out
}

/// Returns (param, payload); rejects other kinds, bad lengths and non-zero padding.
pub fn unframe(kind: u16, bytes: &[u8]) -> Result<(u16, &[u8])> {
    if bytes.len() < FRAME_HEADER || !bytes.len().is_multiple_of(32) || &bytes[..4] != MAGIC {
        bail!("proof bytes: bad frame");
    }
    let k = u16::from_be_bytes([bytes[4], bytes[5]]);
    if k != kind {
        bail!("proof bytes: kind {k}, expected {kind}");
    }
    let param = u16::from_be_bytes([bytes[6], bytes[7]]);
    let n = u64::from_be_bytes(bytes[8..16].try_into()?) as usize;
    let end = FRAME_HEADER.checked_add(n).filter(|&e| e <= bytes.len());
    let end = end.ok_or_else(|| anyhow!("proof bytes: payload length out of range"))?;
    if bytes.len() - end >= 32 || bytes[end..].iter().any(|&b| b != 0) {
        bail!("proof bytes: bad padding");
    }
    Ok((param, &bytes[FRAME_HEADER..end]))
}

fn u32_limb(e: &F) -> Result<[u8; 4]> {
    u32::try_from(e.to_canonical_u64())
        .map(u32::to_be_bytes)
        .map_err(|_| anyhow!("public input limb exceeds 32 bits"))
}

fn limbs_to_bytes(out: &mut Vec<u8>, limbs: &[F]) -> Result<()> {
    for l in limbs {
        out.extend_from_slice(&u32_limb(l)?);
    }
    Ok(())
}

fn elems_to_bytes(out: &mut Vec<u8>, elems: &[F]) {
    for e in elems {
        out.extend_from_slice(&e.to_canonical_u64().to_be_bytes());
    }
}

/// Bytes of a chunk instance.
pub const CHUNK_INSTANCE_LEN: usize = 216;
/// Offset of the per-chunk data hashes in a batch instance.
pub const BATCH_DATA_HASHES: usize = 152;

/// Chunk instance (216 bytes): chain id u64 | prev root | post root | withdraw root | data hash |
/// pi hash | Poseidon commitment (4 x u64) | preimage length u64 | block count u64; big-endian.
pub fn chunk_instance(pis: &[F]) -> Result<Vec<u8>> {
    use chunk_pi as c;
    if pis.len() != c::COUNT {
        bail!(
            "chunk proof has {} public inputs, expected {}",
            pis.len(),
            c::COUNT
        );
    }
    let mut out = Vec::with_capacity(CHUNK_INSTANCE_LEN);
    limbs_to_bytes(&mut out, &pis[c::CHAIN_ID..c::COMMITMENT])?;
    elems_to_bytes(&mut out, &pis[c::COMMITMENT..c::COUNT]);
    Ok(out)
}

/// Batch instance: chain id u64 | prev root (first chunk) | post root (last) | withdraw root (last) |
/// Poseidon commitment over all chunk public inputs (4 x u64) | chunk count u64 | block count u64 |
/// data hash per chunk.
pub fn batch_instance(pis: &[F]) -> Result<Vec<u8>> {
    use batch_pi as b;
    if pis.len() < b::DATA_HASHES || !(pis.len() - b::DATA_HASHES).is_multiple_of(8) {
        bail!("batch proof has a malformed public input vector");
    }
    let mut out = Vec::with_capacity(BATCH_DATA_HASHES + 4 * (pis.len() - b::DATA_HASHES));
    limbs_to_bytes(&mut out, &pis[b::CHAIN_ID..b::COMMITMENT])?;
    elems_to_bytes(&mut out, &pis[b::COMMITMENT..b::DATA_HASHES]);
    limbs_to_bytes(&mut out, &pis[b::DATA_HASHES..])?;
    Ok(out)
}

/// Offset of the per-batch commitments in a bundle instance.
pub const BUNDLE_BATCH_COMMITMENTS: usize = 152;

/// Bundle instance: chain id u64 | prev root (first batch) | post root (last) | withdraw root
/// (last) | Poseidon commitment over all batch public inputs (4 x u64) | batch count u64 | block
/// count u64 | each batch's Poseidon commitment (4 x u64).
pub fn bundle_instance(pis: &[F]) -> Result<Vec<u8>> {
    use bundle_pi as b;
    if pis.len() < b::BATCH_COMMITMENTS || !(pis.len() - b::BATCH_COMMITMENTS).is_multiple_of(4) {
        bail!("bundle proof has a malformed public input vector");
    }
    let mut out =
        Vec::with_capacity(BUNDLE_BATCH_COMMITMENTS + 8 * (pis.len() - b::BATCH_COMMITMENTS));
    limbs_to_bytes(&mut out, &pis[b::CHAIN_ID..b::COMMITMENT])?;
    elems_to_bytes(&mut out, &pis[b::COMMITMENT..]);
    Ok(out)
}

/// Fields decoded from an instance's first 104 bytes (identical in chunk, batch and bundle
/// layouts).
pub struct Roots {
    pub chain_id: u64,
    pub prev: [u8; 32],
    pub post: [u8; 32],
    pub withdraw: [u8; 32],
}

pub fn roots_of(instance: &[u8]) -> Result<Roots> {
    if instance.len() < 104 {
        bail!("instance too short");
    }
    let arr = |o: usize| -> [u8; 32] { instance[o..o + 32].try_into().unwrap_or([0; 32]) };
    Ok(Roots {
        chain_id: u64::from_be_bytes(instance[..8].try_into()?),
        prev: arr(8),
        post: arr(40),
        withdraw: arr(72),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_padding_checks() {
        let f = frame(KIND_CHUNK, 3, &[1, 2, 3]);
        assert_eq!(f.len(), 32);
        assert_eq!(unframe(KIND_CHUNK, &f).unwrap(), (3, &[1u8, 2, 3][..]));
        assert!(unframe(KIND_BATCH, &f).is_err());
        let mut bad = f.clone();
        bad[31] = 1;
        assert!(unframe(KIND_CHUNK, &bad).is_err());
        let mut long = f.clone();
        long.extend_from_slice(&[0; 32]);
        assert!(unframe(KIND_CHUNK, &long).is_err());
        assert!(unframe(KIND_CHUNK, &f[..16]).is_err());
    }
}
