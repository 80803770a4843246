"""Proof JSON per HTTP coordinator generation: one codec per generation at the protocol edge.

The worker and the ledger keep a proof as the prover made it (`AggProof`: proof, instance,
final_pair, vk, block_count). A coordinator of the HTTP era does not: it decodes a submitted
proof into its Go struct (spec coordinator-http-protocol 6.2), keeps only the members that
struct declares, and serves sub-proofs re-encoded from it inside batch and bundle tasks
(5.3, 5.4). So an answer must be in that generation's own shape, and everything the prover
needs back must survive the struct round trip:

- H1 (v4.1.x): chunk ``{protocol, proof, instances, vk}`` (v4.1.1 re-encodes it with
  ``storage_trace: null``), batch ``{proof, instances, vk}``.
- H2 (v4.3.76..v4.4.36): the same members (v4.4.x adds optional ones the roller leaves out).
- H3 (v4.4.37..v4.4.70): chunk as H2; batch ``{protocol, proof, instances, vk, batch_hash}``
  (``batch_hash`` = the batch task id); bundle ``{proof, instances, vk}``.
- H4 (2025, OpenVM, spec I): ``{"metadata": {...}, "proof": {"proofs": b64,
  "public_values": [byte, ...], "vk": b64}, "vk": b64}`` for chunks and batches; a bundle's
  ``proof`` is the EVM form ``{"proof": b64, "instances": [["0x<instance hex>"]], "vk": b64}``.
  The 2025 Go structs (``VmProof.PublicValues []uint32``, ``EVmProof.Instances [][]string``)
  take these values; the instance bytes as a list of byte values also decode into a Go
  ``[]byte``, and ``vk`` is sent both inside ``proof`` (the Go struct's place) and at the top
  (the spec table's place), so either reading keeps it.

``final_pair`` and ``block_count`` are in no Go struct: `decode` re-derives them from the
instance bytes exactly as the native prover computes them (native/src/prover.rs):

- chunk (216-byte instance): final_pair = instance[136:200] (pi hash ‖ commitment),
  block_count = u64 at instance[208:216];
- batch and bundle (152 + 32·n bytes): final_pair = keccak(chain id ‖ prev ‖ post ‖ withdraw
  ‖ keccak(instance[152:])) ‖ instance[104:136], block_count = u64 at instance[144:152].

Failure model: pure functions. A value that is not the generation's shape (wrong JSON types,
bad base64) raises WireFormatError naming the field path; an instance too short or of the
wrong length for its kind leaves final_pair empty and block_count 0, so the prover itself
refuses the sub-proof with its own reason (as it would any malformed proof).
"""

from __future__ import annotations

import json
from typing import Any

from eth_utils.crypto import keccak

from roller.errors import WireFormatError
from roller.protocol.encoding import (
    UINT8_MAX,
    b64encode_go,
    decode_bytes,
    decode_list,
    decode_str,
    decode_uint,
    go_dumps,
    join,
    object_members,
    parse_hash,
)
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.messages import AggProof

CHUNK_INSTANCE_LEN = 216
# Batch and bundle instances: 152 fixed bytes, then one 32-byte entry per sub-proof.
AGG_LIST_AT = 152
ZERO_HASH = "0x" + "00" * 32


# -- what the Go structs drop, re-derived --------------------------------------------------

def _u64(instance: bytes, at: int) -> int:
    return int.from_bytes(instance[at:at + 8], "big")


def derive(task_type: int, instance: bytes) -> tuple[bytes, int]:
    """(final_pair, block_count) of a proof of `task_type` (HTTP numbering) from its instance;
    (b"", 0) when the instance has no valid layout for that kind."""
    if task_type == TaskType.CHUNK:
        if len(instance) != CHUNK_INSTANCE_LEN:
            return b"", 0
        return instance[136:200], _u64(instance, 208)
    if len(instance) < AGG_LIST_AT or (len(instance) - AGG_LIST_AT) % 32:
        return b"", 0
    roots = instance[:104]  # chain id u64 | prev | post | withdraw
    pi_hash = keccak(roots + keccak(instance[AGG_LIST_AT:]))
    return pi_hash + instance[104:136], _u64(instance, 144)


def _with_derived(task_type: int, proof: bytes, instance: bytes, vk: bytes) -> AggProof:
    final_pair, block_count = derive(task_type, instance)
    return AggProof(proof=proof, instance=instance, final_pair=final_pair, vk=vk,
                    block_count=block_count)


def _b64(data: bytes) -> str | None:
    return b64encode_go(data) if data else None  # a nil Go slice is null


def _hash_or_zero(text: str) -> str:
    try:
        return parse_hash(text, "task_id")
    except WireFormatError:
        # A bundle id has no 0x; a proxy rewrites ids (spec 12): no hash to name.
        return ZERO_HASH


def _hash32(data: bytes) -> str:
    return "0x" + data.hex() if len(data) == 32 else ZERO_HASH


# -- H1..H3: the halo2 structs ---------------------------------------------------------------

def _encode_halo2(gen: Generation, task_type: int, task_id: str, p: AggProof) -> dict[str, Any]:
    if task_type == TaskType.CHUNK:
        return {"protocol": None, "proof": _b64(p.proof), "instances": _b64(p.instance),
                "vk": _b64(p.vk)}
    if task_type == TaskType.BATCH and gen.rank >= 3:
        return {"protocol": None, "proof": _b64(p.proof), "instances": _b64(p.instance),
                "vk": _b64(p.vk), "batch_hash": _hash_or_zero(task_id)}
    return {"proof": _b64(p.proof), "instances": _b64(p.instance), "vk": _b64(p.vk)}


def _decode_halo2(task_type: int, value: Any, path: str) -> AggProof:
    m = object_members(value if value is not None else {}, path, ("proof", "instances", "vk"))
    return _with_derived(task_type,
                         decode_bytes(m.get("proof"), join(path, "proof")),
                         decode_bytes(m.get("instances"), join(path, "instances")),
                         decode_bytes(m.get("vk"), join(path, "vk")))


# -- H4: OpenVM ----------------------------------------------------------------------------------

def _roots(instance: bytes) -> dict[str, Any]:
    if len(instance) < 104:
        return {"chain_id": 0, "prev": ZERO_HASH, "post": ZERO_HASH, "withdraw": ZERO_HASH}
    return {"chain_id": _u64(instance, 0), "prev": _hash32(instance[8:40]),
            "post": _hash32(instance[40:72]), "withdraw": _hash32(instance[72:104])}


def _num_batches(instance: bytes) -> int:
    # Informational metadata, a Go uint32: a count that does not fit says nothing true.
    count = _u64(instance, 136) if len(instance) >= 144 else 0
    return count if count <= 0xFFFF_FFFF else 0


def _encode_openvm(task_type: int, task_id: str, p: AggProof) -> dict[str, Any]:
    r = _roots(p.instance)
    if task_type == TaskType.BUNDLE:
        final_pair, _ = derive(task_type, p.instance)
        info = {"chain_id": r["chain_id"], "prev_state_root": r["prev"],
                "post_state_root": r["post"], "withdraw_root": r["withdraw"],
                "num_batches": _num_batches(p.instance),
                "prev_batch_hash": ZERO_HASH, "batch_hash": ZERO_HASH}
        return {"metadata": {"bundle_info": info,
                             "bundle_pi_hash": _hash32(final_pair[:32])},
                "proof": {"proof": _b64(p.proof), "instances": [["0x" + p.instance.hex()]],
                          "vk": _b64(p.vk)},
                "vk": _b64(p.vk)}
    if task_type == TaskType.CHUNK:
        metadata: dict[str, Any] = {"chunk_info": {
            "chain_id": r["chain_id"], "prev_state_root": r["prev"],
            "post_state_root": r["post"], "withdraw_root": r["withdraw"],
            "data_hash": _hash32(p.instance[104:136]), "tx_data_digest": ZERO_HASH}}
    else:
        batch_hash = _hash_or_zero(task_id)
        metadata = {"batch_info": {
            "parent_batch_hash": ZERO_HASH, "parent_state_root": r["prev"],
            "state_root": r["post"], "withdraw_root": r["withdraw"],
            "batch_hash": batch_hash, "chain_id": r["chain_id"]}, "batch_hash": batch_hash}
    # public_values: the instance as byte values, OpenVM's revealed-bytes convention.
    return {"metadata": metadata,
            "proof": {"proofs": _b64(p.proof), "public_values": list(p.instance),
                      "vk": _b64(p.vk)},
            "vk": _b64(p.vk)}


def _public_values(value: Any, path: str) -> bytes:
    if isinstance(value, str) or value is None:
        return decode_bytes(value, path)  # the spec table's base64 form
    return bytes(decode_uint(v, p, UINT8_MAX) for p, v in decode_list(value, path))


def _evm_instances(value: Any, path: str) -> bytes:
    out = b""
    for row_path, row in decode_list(value, path):
        for item_path, item in decode_list(row, row_path):
            text = decode_str(item, item_path)
            digits = text[2:] if text.startswith(("0x", "0X")) else text
            try:
                out += bytes.fromhex(digits)
            except ValueError as exc:
                raise WireFormatError(item_path, f"not hex: {exc}") from exc
    return out


def _decode_openvm(task_type: int, value: Any, path: str) -> AggProof:
    m = object_members(value if value is not None else {}, path, ("proof", "vk"))
    proof_path = join(path, "proof")
    inner = m.get("proof")
    top_vk = decode_bytes(m.get("vk"), join(path, "vk"))
    if inner is None:
        return _with_derived(task_type, b"", b"", top_vk)
    if task_type == TaskType.BUNDLE:
        e = object_members(inner, proof_path, ("proof", "instances", "vk"))
        data = decode_bytes(e.get("proof"), join(proof_path, "proof"))
        instance = _evm_instances(e.get("instances"), join(proof_path, "instances"))
    else:
        e = object_members(inner, proof_path, ("proofs", "public_values", "vk"))
        proofs = e.get("proofs")
        data = decode_bytes(proofs if isinstance(proofs, str) or proofs is None else None,
                            join(proof_path, "proofs"))
        if proofs is not None and not isinstance(proofs, str):
            raise WireFormatError(join(proof_path, "proofs"), "expected base64 string")
        instance = _public_values(e.get("public_values"), join(proof_path, "public_values"))
    vk = decode_bytes(e.get("vk"), join(proof_path, "vk")) or top_vk
    return _with_derived(task_type, data, instance, vk)


# -- the codec -------------------------------------------------------------------------------------

def encode_value(generation: Generation | str, task_type: int, task_id: str,
                 proof: AggProof) -> dict[str, Any]:
    """`proof` as generation's proof object for a task of `task_type` (HTTP numbering)."""
    gen = Generation(generation)
    if gen == Generation.H4:
        return _encode_openvm(task_type, task_id, proof)
    return _encode_halo2(gen, task_type, task_id, proof)


def encode_proof(generation: Generation | str, task_type: int, task_id: str,
                 proof: AggProof) -> str:
    """The submit_proof ``proof`` member: the generation's proof object as JSON text."""
    return go_dumps(encode_value(generation, task_type, task_id, proof))


def decode_value(generation: Generation | str, task_type: int, value: Any,
                 path: str = "proof") -> AggProof:
    """A proof object of the generation (a submitted proof, or a sub-proof served inside a
    batch or bundle task) as the prover's AggProof, final_pair and block_count re-derived."""
    gen = Generation(generation)
    if gen == Generation.H4:
        return _decode_openvm(task_type, value, path)
    return _decode_halo2(task_type, value, path)


def decode_proof(generation: Generation | str, task_type: int, text: str,
                 path: str = "proof") -> AggProof:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WireFormatError(path, f"not JSON: {exc}") from exc
    return decode_value(generation, task_type, value, path)
