"""The devnet coordinator's codec v3/v4 batch columns: the `batch_header` and `blob_bytes` an
H3/H4 batch task of a Darwin or DarwinV2 batch carries (spec coordinator-http-protocol 5.3).

Scroll's rollup-relayer makes both when it proposes a batch (da-codec NewDABatch: the header's
Encode and BlobBytes go to the batch table), and the coordinator serves them with the task.
The devnet makes them the same way, from what it has of the batch:

- the blob: the batch bytes of da-codec constructBlobPayload (metadata, then each chunk's L2
  transactions: their signed EIP-2718 encodings, rebuilt from the served traces and checked
  against each trace's txHash; L1 messages left out), compressed as codec v3 always does and
  codec v4 does when the frame is one Scroll's circuit decodes (roller.protocol.batch_header:
  the frame format, not Scroll's encoder byte for byte);
- data hash: keccak256 of the data hashes the chunk proofs attest, the ones the task's chunk
  infos name too (`served_data_hash`);
- L1 messages: the queue indexes of the batch's L1 message transactions (the trace's nonce);
  the parent batch is taken to have popped every message before the batch's first one (0
  when the batch has none), so l1_message_popped = last index + 1 - first index and
  total_l1_message_popped = last index + 1;
- batch index: the batch's place among the book's batch tasks, from 1; parent batch hash: the
  previous batch task's id (zero for the first); last block timestamp: the last block's.
A chunk whose blocks the devnet cannot name (a batch pushed with bare proofs) adds no
transactions to the blob and no L1 messages.

`corrupt` alters one served field for tests of the prover's check (config
`corrupt_batch_header_field`).

Failure model: `signed_tx_bytes` raises RollerError naming the block and the transaction when
a trace's transaction does not rebuild into an encoding that hashes to its txHash (or is of a
type it does not know); a batch's blob leaves such a transaction out, with a warning.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import rlp
from eth_utils import keccak

from roller.devnet.tasksource import AGGREGATOR, TaskBook, TaskRecord
from roller.devnet.traces import TraceIndex
from roller.errors import RollerError
from roller.forks import CODEC_OF
from roller.protocol import batch_header as bh
from roller.protocol.messages import AggProof

log = logging.getLogger(__name__)

L1_MESSAGE_TX_TYPE = 0x7E
ZERO_HASH = "0x" + "00" * 32
# What `corrupt` can alter: the header's members (z and y apart), and the blob payload.
CORRUPTIBLE = ("version", "batch_index", "l1_message_popped", "total_l1_message_popped",
               "data_hash", "blob_versioned_hash", "parent_batch_hash",
               "last_block_timestamp", "blob_data_proof[0]", "blob_data_proof[1]",
               "blob_bytes")


def served_data_hash(proof: AggProof) -> bytes:
    """A chunk's data hash as the devnet serves it: the one its proof attests; for a proof of
    another layout, keccak256 of its proof bytes (a stand-in, as before)."""
    attested = bh.chunk_data_hash(proof)
    return attested if attested is not None else keccak(proof.proof)


def _quantity(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
    return int(value)


def _bytes(value: Any) -> bytes:
    if not value:
        return b""
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


def _access_list(value: Any) -> list[list[Any]]:
    return [[_bytes(e.get("address")), [_bytes(k) for k in e.get("storageKeys") or []]]
            for e in value or []]


def signed_tx_bytes(tx: Mapping[str, Any], where: str = "transaction") -> bytes:
    """The signed EIP-2718 encoding of an L2 transaction from its trace fields (l2geth
    TransactionData), as da-codec ConvertTxDataToRLPEncoding makes it; RollerError if it does
    not hash to the trace's txHash or its type is not legacy, EIP-2930 or EIP-1559."""
    kind = _quantity(tx.get("type"))
    to = b"" if tx.get("isCreate") or not tx.get("to") else _bytes(tx["to"])
    common = [_quantity(tx.get("nonce"))]
    tail = [_quantity(tx.get("gas")), to, _quantity(tx.get("value")), _bytes(tx.get("data"))]
    sig = [_quantity(tx.get("v")), _quantity(tx.get("r")), _quantity(tx.get("s"))]
    if kind == 0:
        encoded = rlp.encode(common + [_quantity(tx.get("gasPrice"))] + tail + sig)
    elif kind == 1:
        encoded = b"\x01" + rlp.encode([_quantity(tx.get("chainId"))] + common
                                       + [_quantity(tx.get("gasPrice"))] + tail
                                       + [_access_list(tx.get("accessList"))] + sig)
    elif kind == 2:
        encoded = b"\x02" + rlp.encode([_quantity(tx.get("chainId"))] + common
                                       + [_quantity(tx.get("gasTipCap")),
                                          _quantity(tx.get("gasFeeCap"))] + tail
                                       + [_access_list(tx.get("accessList"))] + sig)
    else:
        raise RollerError(f"{where}: transaction type {kind} has no encoding here")
    if "0x" + keccak(encoded).hex() != str(tx.get("txHash", "")).lower():
        raise RollerError(f"{where}: rebuilt encoding does not hash to txHash "
                          f"{tx.get('txHash')}")
    return encoded


def chunk_tx_bytes(blocks: Sequence[Mapping[str, Any]]) -> bytes:
    """A chunk's bytes in the blob: its blocks' L2 transactions, signed, in order. A
    transaction whose encoding cannot be rebuilt from its trace (2023 traces leave out an
    EIP-1559 transaction's fee caps) is left out, with a warning: the devnet's blob is then
    not the chain's, which nothing here can tell."""
    out = []
    for block in blocks:
        number = _quantity(block.get("header", {}).get("number"))
        for i, tx in enumerate(block.get("transactions") or []):
            if _quantity(tx.get("type")) == L1_MESSAGE_TX_TYPE:
                continue
            try:
                out.append(signed_tx_bytes(tx, f"block {number} transaction {i}"))
            except RollerError as exc:
                log.warning("transaction left out of the batch blob: %s", exc)
    return b"".join(out)


def _chunk_blocks(task: TaskRecord, book: TaskBook,
                  traces: TraceIndex | None) -> list[list[dict[str, Any]]]:
    """Each sub-proof's chunk as its parsed traces (empty when the devnet cannot name it)."""
    by_proof = {t.proof: t for t in book.tasks.values()
                if t.type != AGGREGATOR and t.proof is not None}
    chunks = []
    for proof in task.sub_proofs:
        chunk = by_proof.get(proof)
        entries = [traces.by_hash.get(h) for h in chunk.block_hashes] \
            if chunk is not None and traces is not None else []
        chunks.append([json.loads(e.raw) for e in entries if e is not None])
    return chunks


def batch_columns(task: TaskRecord, book: TaskBook,
                  traces: TraceIndex | None) -> tuple[bh.BatchHeader, bytes] | None:
    """The header and blob payload of a batch task (the module's rules); None unless its
    fork commits with codec v3 or v4."""
    codec = CODEC_OF.get(task.fork)
    if codec not in bh.HEADER_CODECS or not task.sub_proofs:
        return None
    assert codec is not None
    blocks = _chunk_blocks(task, book, traces)
    payload = bh.blob_payload(bh.batch_bytes_from([chunk_tx_bytes(c) for c in blocks]), codec)
    queue = [_quantity(tx.get("nonce")) for chunk in blocks for block in chunk
             for tx in block.get("transactions") or []
             if _quantity(tx.get("type")) == L1_MESSAGE_TX_TYPE]
    before, total = (queue[0], queue[-1] + 1) if queue else (0, 0)
    batches = [t for t in book.tasks.values() if t.type == AGGREGATOR]
    place = next((i for i, t in enumerate(batches) if t.id == task.id), len(batches))
    last = [b for chunk in blocks for b in chunk][-1:]
    return bh.build_header(
        version=codec, batch_index=place + 1, l1_message_popped=total - before,
        total_l1_message_popped=total,
        chunk_data_hashes=[served_data_hash(p) for p in task.sub_proofs],
        parent_batch_hash=batches[place - 1].id if place > 0 else ZERO_HASH,
        last_block_timestamp=_quantity(last[0].get("header", {}).get("timestamp"))
        if last else 0,
        payload=payload), payload


def _flip(hex_hash: str) -> str:
    """The hash with its last bit flipped (z stays below the BLS modulus)."""
    return hex_hash[:-1] + format(int(hex_hash[-1], 16) ^ 1, "x")


def corrupt(header: Mapping[str, Any], payload: bytes, field: str
            ) -> tuple[dict[str, Any], bytes]:
    """The served header JSON and payload with `field` (one of CORRUPTIBLE) altered, the way
    the prover's check can tell where it can: version to the other header codec;
    l1_message_popped to 0 (1 if it was 0); total_l1_message_popped below l1_message_popped
    when that is not 0 (else one more); other numbers one more; a hash, z or y with its last
    bit flipped; blob_bytes with its last byte flipped."""
    out = dict(header)
    proof = list(out["blob_data_proof"])
    if field == "version":
        out["version"] = 7 - int(out["version"])
    elif field == "l1_message_popped":
        out[field] = 0 if out[field] else 1
    elif field == "total_l1_message_popped":
        popped = int(out["l1_message_popped"])
        out[field] = popped - 1 if popped else int(out[field]) + 1
    elif field in ("batch_index", "last_block_timestamp"):
        out[field] = int(out[field]) + 1
    elif field in ("data_hash", "blob_versioned_hash", "parent_batch_hash"):
        out[field] = _flip(out[field])
    elif field in ("blob_data_proof[0]", "blob_data_proof[1]"):
        i = int(field[-2])
        proof[i] = _flip(proof[i])
        out["blob_data_proof"] = proof
    elif field == "blob_bytes":
        payload = payload[:-1] + bytes([payload[-1] ^ 1])
    else:
        raise ValueError(f"cannot corrupt {field!r} (one of {', '.join(CORRUPTIBLE)})")
    return out, payload


def served(task: TaskRecord, book: TaskBook, traces: TraceIndex | None,
           corrupt_field: str | None = None,
           table: dict[str, tuple[bh.BatchHeader, bytes] | None] | None = None,
           ) -> tuple[dict[str, Any] | None, str | None]:
    """The task data's (batch_header, blob_bytes): the header's JSON and the base64 payload,
    or (None, None) for a batch of another codec. `table` keeps each batch's columns by
    task id, made once (as the batch table keeps them: about 0.3 s to make)."""
    if table is None:
        table = {}
    if task.id not in table:
        table[task.id] = batch_columns(task, book, traces)
    columns = table[task.id]
    if columns is None:
        return None, None
    header, payload = columns
    value = header.to_json()
    if corrupt_field is not None:
        value, payload = corrupt(value, payload, corrupt_field)
    return value, base64.b64encode(payload).decode()
