"""Go `encoding/json` decoding rules for the devnet coordinator (spec 1.2, 1.4, 3.1).

The real coordinator decodes params with Go's encoding/json: member names match
case-insensitively, unknown members are ignored, missing members keep Go's zero value,
`null` leaves a value field untouched, and type errors read like
`json: cannot unmarshal number -1 into Go struct field .message.timestamp of type uint32`.
This module reproduces those rules and texts so the devnet answers what the real one answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from typing import Any


class GoNumber(str):
    """A JSON number kept as its literal text (Go checks uint ranges on the literal)."""


class GoObject(list[tuple[str, Any]]):
    """A JSON object as its (name, value) pairs in text order (Go decodes members in order)."""

    def get_folded(self, name: str) -> tuple[bool, Any]:
        """Last member matching `name` (exact or case-insensitive), as Go would leave it."""
        found, value = False, None
        for key, item in self:
            if key == name or key.lower() == name.lower():
                found, value = True, item
        return found, value


class GoDecodeError(Exception):
    """Go's decode error text (without go-ethereum's `invalid argument N: ` prefix)."""


class GoSyntaxError(Exception):
    """The message is not valid JSON; the text mimics Go's parser messages."""


_NUM_RE = re.compile(r"-?(0|[1-9][0-9]*)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid constant {name}")


_DECODER = json.JSONDecoder(
    object_pairs_hook=GoObject,
    parse_int=GoNumber,
    parse_float=GoNumber,
    parse_constant=_reject_constant,
)


def loads_first(text: str) -> Any:
    """Parse the first JSON value of a message (Go reads one value and ignores the rest)."""
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise GoSyntaxError("unexpected end of JSON input")
    try:
        value, _ = _DECODER.raw_decode(stripped)
    except (json.JSONDecodeError, ValueError) as exc:
        pos = getattr(exc, "pos", 0)
        if pos >= len(stripped):
            raise GoSyntaxError("unexpected end of JSON input") from None
        where = "looking for beginning of value" if pos == 0 else "in JSON value"
        raise GoSyntaxError(f"invalid character {stripped[pos]!r} {where}") from None
    return value


def kind_of(value: Any) -> str:
    """Go's name for a JSON value's kind in UnmarshalTypeError (`number` without literal)."""
    if isinstance(value, GoNumber):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, GoObject):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def to_plain(value: Any) -> Any:
    """Convert parsed values (GoObject, GoNumber) to plain dict/int/float for logging or echo."""
    if isinstance(value, GoObject):
        return {k: to_plain(v) for k, v in value}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, GoNumber):
        return int(value) if _NUM_RE.fullmatch(value) else float(value)
    return value


@dataclass(frozen=True)
class Field:
    """One struct member: JSON name, Go kind (`string`, `uint`, `bytes`, `struct`), details."""

    name: str
    kind: str
    go_type: str
    bits: int = 0
    struct: Struct | None = None


@dataclass(frozen=True)
class Struct:
    """A Go struct: its Go type name and members in declaration order."""

    go_type: str
    fields: tuple[Field, ...]

    def zero(self) -> dict[str, Any]:
        """Go zero value: "" for strings, 0 for uints, None for byte slices and pointers."""
        zeros = {"string": "", "uint": 0, "bytes": None, "struct": None}
        return {f.name: zeros[f.kind] for f in self.fields}


def _type_error(value_text: str, path: str, go_type: str) -> GoDecodeError:
    if path:
        return GoDecodeError(
            f"json: cannot unmarshal {value_text} into Go struct field .{path} of type {go_type}"
        )
    return GoDecodeError(f"json: cannot unmarshal {value_text} into Go value of type {go_type}")


def _std_b64(text: str) -> bytes:
    """Go's base64.StdEncoding (padded, `+/`), which also skips `\\r` and `\\n`."""
    cleaned = text.replace("\r", "").replace("\n", "")
    alphabet = re.compile(r"[A-Za-z0-9+/]*={0,2}")
    match = alphabet.match(cleaned)
    end = match.end() if match else 0
    if end != len(cleaned) or len(cleaned) % 4:
        raise GoDecodeError(f"illegal base64 data at input byte {min(end, len(cleaned))}")
    try:
        return base64.b64decode(cleaned, validate=True)
    except binascii.Error:
        raise GoDecodeError(f"illegal base64 data at input byte {len(cleaned) - 1}") from None


def _decode_field(f: Field, value: Any, path: str, current: Any) -> Any:
    if value is None:
        # null leaves value fields untouched and sets pointers and slices to nil.
        return None if f.kind in ("bytes", "struct") else current
    if f.kind == "string":
        if isinstance(value, str) and not isinstance(value, GoNumber):
            return str(value)
        raise _type_error(kind_of(value), path, f.go_type)
    if f.kind == "uint":
        if isinstance(value, GoNumber):
            if _NUM_RE.fullmatch(value) and 0 <= int(value) < (1 << f.bits):
                return int(value)
            raise _type_error(f"number {value}", path, f.go_type)
        raise _type_error(kind_of(value), path, f.go_type)
    if f.kind == "bytes":
        if isinstance(value, str) and not isinstance(value, GoNumber):
            return _std_b64(value)
        if isinstance(value, list) and not isinstance(value, GoObject):
            out = bytearray()
            for i, item in enumerate(value):
                if not (isinstance(item, GoNumber) and _NUM_RE.fullmatch(item)):
                    raise _type_error(kind_of(item), f"{path}[{i}]", "uint8")
                if not 0 <= int(item) < 256:
                    raise _type_error(f"number {item}", path, "uint8")
                out.append(int(item))
            return bytes(out)
        raise _type_error(kind_of(value), path, f.go_type)
    assert f.struct is not None
    return decode_struct(f.struct, value, path)


def decode_struct(struct: Struct, value: Any, path: str = "") -> dict[str, Any] | None:
    """Decode a JSON value into a canonical dict with every member (Go zero values filled in).

    Returns None for `null` (a nil pointer); raises GoDecodeError with Go's text otherwise.
    """
    if value is None:
        return None
    if not isinstance(value, GoObject):
        raise _type_error(kind_of(value), path, struct.go_type)
    out = struct.zero()
    by_name = {f.name: f for f in struct.fields}
    for key, item in value:
        f = by_name.get(key) or next(
            (g for g in struct.fields if g.name.lower() == key.lower()), None
        )
        if f is None:
            continue
        sub = f"{path}.{f.name}" if path else f.name
        out[f.name] = _decode_field(f, item, sub, out[f.name])
    return out


def decode_string(value: Any, go_type: str = "string") -> str:
    """Decode a top-level string param (e.g. an rpc.ID); null gives ""."""
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, GoNumber):
        return str(value)
    raise _type_error(kind_of(value), "", go_type)


def _escape_html(text: str) -> str:
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def dumps(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (HTML characters escaped, UTF-8 kept)."""
    return _escape_html(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def raw_id(value: Any) -> str:
    """A request id as it is echoed back (numbers keep their literal text)."""
    if isinstance(value, GoNumber):
        return str(value)
    return dumps(to_plain(value))


IDENTITY = Struct(
    "message.Identity",
    (
        Field("name", "string", "string"),
        Field("roller_type", "uint", "message.ProveType", bits=8),
        Field("timestamp", "uint", "uint32", bits=32),
        Field("version", "string", "string"),
        Field("token", "string", "string"),
    ),
)
AUTH_MSG = Struct(
    "message.AuthMsg",
    (
        Field("message", "struct", "message.Identity", struct=IDENTITY),
        Field("signature", "string", "string"),
    ),
)
AGG_PROOF = Struct(
    "message.AggProof",
    (
        Field("proof", "bytes", "[]uint8"),
        Field("instance", "bytes", "[]uint8"),
        Field("final_pair", "bytes", "[]uint8"),
        Field("vk", "bytes", "[]uint8"),
        Field("block_count", "uint", "uint", bits=64),
    ),
)
PROOF_DETAIL = Struct(
    "message.ProofDetail",
    (
        Field("id", "string", "string"),
        Field("type", "uint", "message.ProveType", bits=8),
        Field("status", "uint", "message.RespStatus", bits=32),
        Field("proof", "struct", "message.AggProof", struct=AGG_PROOF),
        Field("error", "string", "string"),
    ),
)
PROOF_MSG = Struct(
    "message.ProofMsg",
    (
        Field("zkProof", "struct", "message.ProofDetail", struct=PROOF_DETAIL),
        Field("signature", "string", "string"),
    ),
)


def _for_0723(struct: Struct) -> Struct:
    """The e78099414 form of a message struct (spec 8): Identity without timestamp, Go's
    ProveType renamed ProofType (its name is in decode errors), nested structs likewise."""
    fields = []
    for f in struct.fields:
        if struct is IDENTITY and f.name == "timestamp":
            continue
        if f.go_type == "message.ProveType":
            f = replace(f, go_type="message.ProofType")
        if f.struct is not None:
            f = replace(f, struct=_for_0723(f.struct))
        fields.append(f)
    return replace(struct, fields=tuple(fields))


AUTH_MSG_0723 = _for_0723(AUTH_MSG)
PROOF_MSG_0723 = _for_0723(PROOF_MSG)
