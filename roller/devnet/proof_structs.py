"""The HTTP coordinators' Go proof structs, as their ORM round-trips a submitted proof.

A real coordinator decodes a submitted ``proof`` into the generation's Go struct
(`common/types/message`), stores the struct re-encoded, and serves chunk proofs inside batch
tasks and batch proofs inside bundle tasks from it (spec coordinator-http-protocol 5.3,
5.4, 6.2). What the struct lacks is gone; what it has comes back the way Go's encoding/json
writes it (declaration order, ``[]byte`` as padded standard base64 or ``null`` for a nil
slice, ``omitempty`` honoured, ``common.Hash`` as 0x-hex). `round_trip` does exactly that, so
the devnet keeps no member a real coordinator would drop.

The structs, per generation (V at the cited anchors; H4 from the 2025 ``euclid`` package, I):

- H1 (v4.1.1): ChunkProof{storage_trace (no omitempty: re-encoded as null, R), protocol,
  proof, instances, vk}; BatchProof{proof, instances, vk}.
- H2 (v4.4.23): ChunkProof{storage_trace omitempty, protocol, proof, instances, vk,
  chunk_info *ChunkInfo omitempty, git_version omitempty, row_usages omitempty};
  BatchProof{proof, instances, vk, git_version omitempty}.
- H3 (v4.4.70): ChunkProof as H2; BatchProof{protocol, proof, instances, vk, batch_hash,
  git_version omitempty}; BundleProof{proof, instances, vk, git_version omitempty}.
- H4: ChunkProof{metadata{chunk_info *ChunkInfo}, proof *VmProof, git_version omitempty},
  BatchProof{metadata{batch_info *BatchInfo, batch_hash}, proof *VmProof, ...},
  BundleProof{metadata{bundle_info *BundleInfo, bundle_pi_hash}, proof *EVmProof, ...};
  VmProof{proofs interface{}, public_values []uint32, vk []byte omitempty},
  EVmProof{proof []byte, instances [][]string, vk []byte omitempty}.

Failure model: a value that does not decode raises GoDecodeError with Go's text
(``json: cannot unmarshal ... into Go struct field ...``), or GoSyntaxError for non-JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from roller.errors import GoDecodeError, GoSyntaxError
from roller.protocol.encoding import _b64decode_go_text, b64encode_go, go_fold, json_type_name
from roller.protocol.http_enums import Generation, TaskType

# Go kinds: "bytes", "hash", "u64", "u32", "bool", "string", "any", or a Struct (a value
# struct), Ptr(Struct) or Slice(kind).
_UINT_BITS = {"u64": 64, "u32": 32}
_GO_NAMES = {"bytes": "[]uint8", "hash": "common.Hash", "u64": "uint64", "u32": "uint32",
             "bool": "bool", "string": "string", "any": "interface {}"}


@dataclass(frozen=True)
class F:
    name: str
    kind: Any
    omitempty: bool = False


@dataclass(frozen=True)
class Struct:
    go_type: str
    fields: tuple[F, ...]


@dataclass(frozen=True)
class Ptr:
    struct: Struct


@dataclass(frozen=True)
class Slice:
    elem: Any


def _go_name(kind: Any) -> str:
    if isinstance(kind, Struct):
        return kind.go_type
    if isinstance(kind, Ptr):
        return "*" + kind.struct.go_type
    if isinstance(kind, Slice):
        return "[]" + _go_name(kind.elem)
    return _GO_NAMES[kind]


def _zero(kind: Any) -> Any:
    if isinstance(kind, Struct):
        return {f.name: _zero(f.kind) for f in kind.fields}
    if kind in _UINT_BITS:
        return 0
    return {"hash": bytes(32), "bool": False, "string": ""}.get(kind) \
        if isinstance(kind, str) else None


def _error(value: Any, where: str, kind: Any) -> GoDecodeError:
    what = json_type_name(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        what = f"number {value}"
    return GoDecodeError(f"json: cannot unmarshal {what} into Go struct field {where} of type "
                         f"{_go_name(kind)}")


def _decode(kind: Any, value: Any, where: str, current: Any) -> Any:
    if value is None:
        # null leaves value fields as they are and sets pointers, slices and interfaces to nil.
        return None if isinstance(kind, Ptr | Slice) or kind in ("bytes", "any") else current
    if isinstance(kind, Struct | Ptr):
        struct = kind if isinstance(kind, Struct) else kind.struct
        if not isinstance(value, dict):
            raise _error(value, where, kind)
        out = dict(current) if isinstance(kind, Struct) and current else _zero(struct)
        for key, item in value.items():
            f = _field(struct, key)
            if f is not None:  # unknown members are dropped
                sub = f"{where}.{f.name}"
                out[f.name] = _decode(f.kind, item, sub, out[f.name])
        return out
    if isinstance(kind, Slice):
        if not isinstance(value, list):
            raise _error(value, where, kind)
        return [_decode(kind.elem, v, where, _zero(kind.elem)) for v in value]
    if kind == "any":
        return value
    if kind == "bytes":
        if isinstance(value, str):
            return _b64decode_go_text(value)
        if isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 256 for v in value):
            return bytes(value)
        raise _error(value, where, kind)
    if kind == "hash":
        # common.Hash.UnmarshalJSON (hexutil): a 0x-prefixed string of exactly 64 hex digits.
        if not isinstance(value, str):
            raise _error(value, where, kind)
        if not value.startswith(("0x", "0X")):
            raise GoDecodeError("json: cannot unmarshal hex string without 0x prefix into Go "
                                f"struct field {where} of type common.Hash")
        try:
            digest = bytes.fromhex(value[2:])
        except ValueError:
            raise GoDecodeError(f"json: cannot unmarshal invalid hex string into Go struct "
                                f"field {where} of type common.Hash") from None
        if len(digest) != 32:
            raise GoDecodeError(f"json: cannot unmarshal hex string of odd length or wrong "
                                f"length into Go struct field {where} of type common.Hash")
        return digest
    if kind in _UINT_BITS:
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value < (1 << _UINT_BITS[kind]):
            raise _error(value, where, kind)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _error(value, where, kind)
        return value
    if not isinstance(value, str):
        raise _error(value, where, kind)
    return value


def _field(struct: Struct, key: str) -> F | None:
    for f in struct.fields:
        if f.name == key:
            return f
    folded = go_fold(key)
    return next((f for f in struct.fields if go_fold(f.name) == folded), None)


def _empty(kind: Any, value: Any) -> bool:
    """Go's omitempty: false, 0, nil pointer/interface, empty string, slice or byte slice."""
    if isinstance(kind, Struct) or kind == "hash":
        return False  # structs and arrays are never empty
    return value is None or value in ("", 0, False, b"") or value == []


def _sorted(value: Any) -> Any:
    # An interface{} holding a JSON object is a map: Go writes its keys sorted.
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _encode(kind: Any, value: Any) -> Any:
    if isinstance(kind, Struct | Ptr):
        if value is None:
            return None
        struct = kind if isinstance(kind, Struct) else kind.struct
        out: dict[str, Any] = {}
        for f in struct.fields:
            v = value[f.name]
            if f.omitempty and _empty(f.kind, v):
                continue
            out[f.name] = _encode(f.kind, v)
        return out
    if isinstance(kind, Slice):
        return None if value is None else [_encode(kind.elem, v) for v in value]
    if kind == "bytes":
        return None if value is None else b64encode_go(value)
    if kind == "hash":
        return "0x" + bytes(value).hex()
    if kind == "any":
        return _sorted(value)
    return value


# -- the structs ---------------------------------------------------------------------------------

_CHUNK_INFO_V44 = Struct("message.ChunkInfo", (
    F("chain_id", "u64"), F("prev_state_root", "hash"), F("post_state_root", "hash"),
    F("withdraw_root", "hash"), F("data_hash", "hash"), F("is_padding", "bool"),
    F("tx_bytes", "bytes")))
_ROW_USAGE = Struct("message.SubCircuitRowUsage", (F("name", "string"), F("row_number", "u64")))

CHUNK_H1 = Struct("message.ChunkProof", (
    F("storage_trace", "bytes"), F("protocol", "bytes"), F("proof", "bytes"),
    F("instances", "bytes"), F("vk", "bytes")))
BATCH_H1 = Struct("message.BatchProof", (
    F("proof", "bytes"), F("instances", "bytes"), F("vk", "bytes")))
CHUNK_V44 = Struct("message.ChunkProof", (
    F("storage_trace", "bytes", True), F("protocol", "bytes"), F("proof", "bytes"),
    F("instances", "bytes"), F("vk", "bytes"), F("chunk_info", Ptr(_CHUNK_INFO_V44), True),
    F("git_version", "string", True), F("row_usages", Slice(_ROW_USAGE), True)))
BATCH_H2 = Struct("message.BatchProof", (
    F("proof", "bytes"), F("instances", "bytes"), F("vk", "bytes"),
    F("git_version", "string", True)))
BATCH_H3 = Struct("message.BatchProof", (
    F("protocol", "bytes"), F("proof", "bytes"), F("instances", "bytes"), F("vk", "bytes"),
    F("batch_hash", "hash"), F("git_version", "string", True)))
BUNDLE_H3 = Struct("message.BundleProof", (
    F("proof", "bytes"), F("instances", "bytes"), F("vk", "bytes"),
    F("git_version", "string", True)))

_VM_PROOF = Struct("message.VmProof", (
    F("proofs", "any"), F("public_values", Slice("u32")), F("vk", "bytes", True)))
_EVM_PROOF = Struct("message.EVmProof", (
    F("proof", "bytes"), F("instances", Slice(Slice("string"))), F("vk", "bytes", True)))
_CHUNK_INFO_H4 = Struct("message.ChunkInfo", (
    F("chain_id", "u64"), F("prev_state_root", "hash"), F("post_state_root", "hash"),
    F("withdraw_root", "hash"), F("data_hash", "hash"), F("tx_data_digest", "hash")))
_BATCH_INFO_H4 = Struct("message.BatchInfo", (
    F("parent_batch_hash", "hash"), F("parent_state_root", "hash"), F("state_root", "hash"),
    F("withdraw_root", "hash"), F("batch_hash", "hash"), F("chain_id", "u64")))
_BUNDLE_INFO_H4 = Struct("message.BundleInfo", (
    F("chain_id", "u64"), F("prev_state_root", "hash"), F("post_state_root", "hash"),
    F("withdraw_root", "hash"), F("num_batches", "u32"), F("prev_batch_hash", "hash"),
    F("batch_hash", "hash")))
CHUNK_H4 = Struct("message.ChunkProof", (
    F("metadata", Struct("struct", (F("chunk_info", Ptr(_CHUNK_INFO_H4)),))),
    F("proof", Ptr(_VM_PROOF)), F("git_version", "string", True)))
BATCH_H4 = Struct("message.BatchProof", (
    F("metadata", Struct("struct", (F("batch_info", Ptr(_BATCH_INFO_H4)),
                                    F("batch_hash", "hash")))),
    F("proof", Ptr(_VM_PROOF)), F("git_version", "string", True)))
BUNDLE_H4 = Struct("message.BundleProof", (
    F("metadata", Struct("struct", (F("bundle_info", Ptr(_BUNDLE_INFO_H4)),
                                    F("bundle_pi_hash", "hash")))),
    F("proof", Ptr(_EVM_PROOF)), F("git_version", "string", True)))

STRUCTS: dict[Generation, dict[int, Struct]] = {
    Generation.H1: {TaskType.CHUNK: CHUNK_H1, TaskType.BATCH: BATCH_H1},
    Generation.H2: {TaskType.CHUNK: CHUNK_V44, TaskType.BATCH: BATCH_H2},
    Generation.H3: {TaskType.CHUNK: CHUNK_V44, TaskType.BATCH: BATCH_H3,
                    TaskType.BUNDLE: BUNDLE_H3},
    Generation.H4: {TaskType.CHUNK: CHUNK_H4, TaskType.BATCH: BATCH_H4,
                    TaskType.BUNDLE: BUNDLE_H4},
}


def struct_for(generation: Generation, task_type: int) -> Struct:
    try:
        return STRUCTS[Generation(generation)][task_type]
    except KeyError:
        raise GoDecodeError(f"no {generation} proof struct for task type {task_type}") from None


def decode(generation: Generation, task_type: int, value: Any) -> Any:
    """`value` (a json.loads result) decoded into the struct: a canonical dict, or None for
    null (Go unmarshals null into a pointer as nil)."""
    struct = struct_for(generation, task_type)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GoDecodeError(f"json: cannot unmarshal {json_type_name(value)} into Go value of "
                            f"type {struct.go_type}")
    return _decode(struct, value, struct.go_type, _zero(struct))


def encode(generation: Generation, task_type: int, decoded: Any) -> Any:
    """The decoded struct as Go's json.Marshal writes it (a JSON-ready value)."""
    if decoded is None:
        return None
    return _encode(struct_for(generation, task_type), decoded)


def round_trip(generation: Generation, task_type: int, text: str) -> Any:
    """A submitted proof text as the coordinator stores and serves it back."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise GoSyntaxError(f"invalid character in proof JSON: {exc}") from None
    return encode(generation, task_type, decode(generation, task_type, value))
