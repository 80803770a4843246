//! The signed encoding of an L2 transaction (EIP-2718 envelope: RLP for legacy transactions, type
//! byte then RLP for EIP-2930 and EIP-1559 ones), rebuilt from a BlockTrace transaction's fields.
//!
//! From codec v1 (Bernoulli) on, Scroll's chunk public input hash commits to the keccak of the
//! chunk's L2 transactions so encoded, concatenated ("tx bytes": scroll-tech/zkevm-circuits
//! aggregator/src/chunk.rs, `ChunkInfo::from_block_traces` / `tx_bytes_hash`); da-codec writes the
//! same bytes into the blob (encoding/da.go, `ConvertTxDataToRLPEncoding`: go-ethereum
//! `MarshalBinary` of a LegacyTx, AccessListTx or DynamicFeeTx built from the trace's fields).
//! Nothing here is guessed: every rebuilt encoding must hash to the trace's `txHash` (the hash the
//! node computed over the transaction it executed), else it is an error naming the transaction.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::trace::keccak;

/// RLP of a byte string.
fn rlp_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() == 1 && b[0] < 0x80 {
        out.push(b[0]);
    } else {
        rlp_len(out, 0x80, b.len());
        out.extend_from_slice(b);
    }
}

/// RLP length prefix with `base` 0x80 (strings) or 0xc0 (lists).
fn rlp_len(out: &mut Vec<u8>, base: u8, len: usize) {
    if len < 56 {
        out.push(base + len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&x| x == 0).count();
        out.push(base + 55 + (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
}

/// RLP of a list whose items are already encoded, concatenated.
fn rlp_list(out: &mut Vec<u8>, items: &[u8]) {
    rlp_len(out, 0xc0, items.len());
    out.extend_from_slice(items);
}

/// Big-endian bytes of an unsigned quantity, leading zeros stripped (RLP's integer form).
fn minimal(be: &[u8]) -> &[u8] {
    let skip = be.iter().take_while(|&&x| x == 0).count();
    &be[skip..]
}

fn hex_bytes(s: &str, what: &str) -> Result<Vec<u8>> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| anyhow!("{what}: expected 0x hex, got {s:?}"))?;
    let h = if h.len() % 2 == 1 {
        format!("0{h}")
    } else {
        h.to_string()
    };
    (0..h.len() / 2)
        .map(|i| {
            u8::from_str_radix(&h[2 * i..2 * i + 2], 16)
                .with_context(|| format!("{what}: bad hex in {s:?}"))
        })
        .collect()
}

/// A JSON quantity (number, or 0x hex up to 32 bytes) as minimal big-endian bytes.
fn quantity(tx: &Value, field: &str, what: &str) -> Result<Vec<u8>> {
    let what = format!("{what}.{field}");
    match tx.get(field) {
        Some(Value::Number(n)) => {
            let n = n
                .as_u64()
                .ok_or_else(|| anyhow!("{what}: not an unsigned integer"))?;
            Ok(minimal(&n.to_be_bytes()).to_vec())
        }
        Some(Value::String(s)) => {
            let b = hex_bytes(s, &what)?;
            let m = minimal(&b);
            if m.len() > 32 {
                bail!("{what}: over 256 bits");
            }
            Ok(m.to_vec())
        }
        None | Some(Value::Null) => bail!("{what}: missing"),
        Some(_) => bail!("{what}: expected a number or 0x hex"),
    }
}

/// `to`: 20 address bytes, or empty for a contract creation (null or absent).
fn to_field(tx: &Value, what: &str) -> Result<Vec<u8>> {
    match tx.get("to") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => {
            let b = hex_bytes(s, &format!("{what}.to"))?;
            if b.len() != 20 {
                bail!("{what}.to: {} bytes, expected an address", b.len());
            }
            Ok(b)
        }
        Some(_) => bail!("{what}.to: expected an address"),
    }
}

fn data_field(tx: &Value, what: &str) -> Result<Vec<u8>> {
    match tx.get("data") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => hex_bytes(s, &format!("{what}.data")),
        Some(_) => bail!("{what}.data: expected 0x hex"),
    }
}

/// RLP of the access list: [[address, [storage key, ...]], ...] (null or absent: empty).
fn access_list(tx: &Value, what: &str) -> Result<Vec<u8>> {
    let mut items = Vec::new();
    let entries = match tx.get("accessList") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => bail!("{what}.accessList: expected an array"),
    };
    for (i, e) in entries.iter().enumerate() {
        let at = format!("{what}.accessList[{i}]");
        let address = e
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{at}.address: missing"))?;
        let address = hex_bytes(address, &format!("{at}.address"))?;
        if address.len() != 20 {
            bail!("{at}.address: {} bytes, expected 20", address.len());
        }
        let mut keys = Vec::new();
        let list = match e.get("storageKeys") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => bail!("{at}.storageKeys: expected an array"),
        };
        for (k, key) in list.iter().enumerate() {
            let key = key
                .as_str()
                .ok_or_else(|| anyhow!("{at}.storageKeys[{k}]: expected 0x hex"))?;
            let key = hex_bytes(key, &format!("{at}.storageKeys[{k}]"))?;
            if key.len() != 32 {
                bail!("{at}.storageKeys[{k}]: {} bytes, expected 32", key.len());
            }
            rlp_bytes(&mut keys, &key);
        }
        let mut entry = Vec::new();
        rlp_bytes(&mut entry, &address);
        rlp_list(&mut entry, &keys);
        rlp_list(&mut items, &entry);
    }
    let mut out = Vec::new();
    rlp_list(&mut out, &items);
    Ok(out)
}

/// The signed encoding of an L2 transaction of a trace (`tx`: its JSON object; `what` names it in
/// errors), checked against the trace's `txHash`: legacy (type 0) rlp([nonce, gasPrice, gas, to,
/// value, data, v, r, s]); EIP-2930 (type 1) 0x01 | rlp([chainId, nonce, gasPrice, gas, to, value,
/// data, accessList, v, r, s]); EIP-1559 (type 2) 0x02 | rlp([chainId, nonce, gasTipCap,
/// gasFeeCap, gas, to, value, data, accessList, v, r, s]). Traces from before l2geth recorded
/// gasTipCap/gasFeeCap carry only gasPrice; it stands in for both, which the hash check then
/// confirms or refuses. Other types (L1 messages included) are an error.
pub fn signed_tx_bytes(tx: &Value, tx_hash: &[u8; 32], what: &str) -> Result<Vec<u8>> {
    let ty = match tx.get("type") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| anyhow!("{what}.type: expected a number"))?,
    };
    let q = |f: &str| quantity(tx, f, what);
    let mut fields = Vec::new();
    let push = |fields: &mut Vec<u8>, b: &[u8]| rlp_bytes(fields, b);
    let prefix: Option<u8> = match ty {
        0 => {
            for f in ["nonce", "gasPrice", "gas"] {
                push(&mut fields, &q(f)?);
            }
            push(&mut fields, &to_field(tx, what)?);
            push(&mut fields, &q("value")?);
            push(&mut fields, &data_field(tx, what)?);
            None
        }
        1 | 2 => {
            push(&mut fields, &q("chainId")?);
            push(&mut fields, &q("nonce")?);
            if ty == 1 {
                push(&mut fields, &q("gasPrice")?);
            } else {
                let cap = |f: &str| match tx.get(f) {
                    None | Some(Value::Null) => q("gasPrice"),
                    Some(_) => q(f),
                };
                push(&mut fields, &cap("gasTipCap")?);
                push(&mut fields, &cap("gasFeeCap")?);
            }
            push(&mut fields, &q("gas")?);
            push(&mut fields, &to_field(tx, what)?);
            push(&mut fields, &q("value")?);
            push(&mut fields, &data_field(tx, what)?);
            fields.extend_from_slice(&access_list(tx, what)?);
            Some(ty as u8)
        }
        other => bail!(
            "{what}: transaction type {other} has no L2 signed encoding here (legacy, EIP-2930 \
             and EIP-1559 only)"
        ),
    };
    for f in ["v", "r", "s"] {
        push(&mut fields, &q(f)?);
    }
    let mut out = Vec::with_capacity(fields.len() + 10);
    out.extend(prefix);
    rlp_list(&mut out, &fields);
    let got = keccak(&out);
    if &got != tx_hash {
        bail!(
            "{what}: the signed encoding rebuilt from the trace's fields hashes to 0x{}, not to \
             its txHash 0x{}; the chunk's tx bytes (codec v1+ public input hash) cannot be \
             computed faithfully",
            hex(&got),
            hex(tx_hash)
        );
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlp_basics() {
        let enc = |b: &[u8]| {
            let mut o = Vec::new();
            rlp_bytes(&mut o, b);
            o
        };
        assert_eq!(enc(&[]), vec![0x80]);
        assert_eq!(enc(&[0x7f]), vec![0x7f]);
        assert_eq!(enc(&[0x80]), vec![0x81, 0x80]);
        assert_eq!(enc(b"dog"), vec![0x83, b'd', b'o', b'g']);
        let long = vec![7u8; 56];
        assert_eq!(&enc(&long)[..2], &[0xb8, 56]);
        let mut l = Vec::new();
        rlp_list(&mut l, &[]);
        assert_eq!(l, vec![0xc0]);
        let mut l = Vec::new();
        rlp_list(&mut l, &vec![1u8; 1024]);
        assert_eq!(&l[..3], &[0xf9, 0x04, 0x00]);
        assert_eq!(minimal(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(minimal(&[0, 0]), &[] as &[u8]);
    }

    #[test]
    fn eip1559_with_an_access_list_and_unknown_types() {
        // A type-2 transaction's fields; the hash is whatever they encode to, so this checks the
        // structure (access list, prefix), not a published value (see trace.rs for those).
        let tx = serde_json::json!({
            "type": 2, "nonce": 1, "gas": 21000, "gasPrice": "0x5", "gasTipCap": "0x1",
            "gasFeeCap": "0x7", "to": "0x1111111111111111111111111111111111111111",
            "chainId": "0x82750", "value": "0x0", "data": "0x",
            "accessList": [{"address": "0x2222222222222222222222222222222222222222",
                            "storageKeys": [format!("0x{}", "33".repeat(32))]}],
            "v": "0x1", "r": "0x2", "s": "0x3",
        });
        let e = signed_tx_bytes(&tx, &[0; 32], "tx").unwrap_err();
        let text = format!("{e}");
        let got = text
            .split("hashes to 0x")
            .nth(1)
            .and_then(|s| s.get(..64))
            .expect("hash in message");
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            *b = u8::from_str_radix(&got[2 * i..2 * i + 2], 16).unwrap();
        }
        let enc = signed_tx_bytes(&tx, &h, "tx").unwrap();
        assert_eq!(enc[0], 2);
        // 0x02 | list prefix | chainId 0x83 08 27 50 | nonce 01 | tip 01 | cap 07 | gas 82 52 08
        assert_eq!(
            &enc[..14],
            &[2, 0xf8, enc[2], 0x83, 0x08, 0x27, 0x50, 1, 1, 7, 0x82, 0x52, 0x08, 0x94]
        );
        // Access list: [[address, [key]]] = f8 38 | f7 | 94 address | e1 a0 key.
        let al = enc
            .windows(3)
            .position(|w| w == [0xf8, 0x38, 0xf7])
            .expect("access list");
        assert_eq!(enc[al + 3], 0x94);
        let mut l1 = tx.clone();
        l1["type"] = 126.into();
        assert!(format!("{}", signed_tx_bytes(&l1, &h, "tx").unwrap_err()).contains("type 126"));
        let mut bad = tx;
        bad["to"] = "0x12".into();
        assert!(signed_tx_bytes(&bad, &h, "tx").is_err());
    }
}
