"""Go `encoding/json`, the one codec: what the roller writes and reads on the wire, and what
the devnet coordinator decodes with Go's own error texts.

Which Go: the 2023 coordinator (scroll a3c18b99a, 2023-06-29, and e78099414, 2023-07-28;
spec coordinator-protocol 0) predates Go 1.22 (2024-02) and Go 1.21 (2023-08), so its
encoder writes ``\\b`` and ``\\f`` as ``\\u0008`` and ``\\u000c`` (1.22 switched to the short
forms) and its decoder matches member names with the pre-1.21 fold rules, where ``ſ``
(U+017F) folds to ``s`` and the Kelvin sign (U+212A) to ``k``; Go 1.21's rewrite folds
both the same way, so the member match is version-independent. The HTTP generations (spec
coordinator-http-protocol) use the same rules here: the specs pin no Go version for them.

Failure model: pure functions, no I/O. Two decoding styles share the rules below:

- the roller's decoders take a ``json.loads`` value plus the dotted field path and raise
  `WireFormatError` naming that path (``null`` leaves the zero value, uint fields reject
  strings, fractions, negatives and out-of-range numbers, ``[]byte`` takes padded standard
  base64, ``common.Hash`` takes ``0x`` plus 64 hex digits);
- the devnet's decoder (`loads_first`, `decode_struct`) keeps number literals and member
  order as Go sees them and raises `GoDecodeError`/`GoSyntaxError` whose text is exactly
  what the real coordinator answers (`json: cannot unmarshal ... into Go struct field ...`).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from roller.errors import GoDecodeError, GoSyntaxError, WireFormatError

UINT8_MAX = 0xFF
UINT32_MAX = 0xFFFF_FFFF
UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF

_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ESCAPE_RE = re.compile(r"\\(.)")
# Go's encoder escapes these even inside strings (HTML safety, JS line terminators).
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML_RE = re.compile("[<>&\u2028\u2029]")
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NUM_RE = re.compile(r"-?(0|[1-9][0-9]*)")


# -- rules both sides share -----------------------------------------------------------------

class GoNumber(str):
    """A JSON number kept as its literal text (Go checks uint ranges on the literal)."""


class GoObject(list[tuple[str, Any]]):
    """A JSON object as its (name, value) pairs in text order (Go decodes members in order)."""

    def get_folded(self, name: str) -> tuple[bool, Any]:
        """Last member matching `name` exactly or by Go's fold, as Go would leave it."""
        found, value = False, None
        for key, item in self:
            if go_fold(key) == go_fold(name):
                found, value = True, item
        return found, value


def go_fold(name: str) -> str:
    """The key Go matches a member name by: ASCII case folded, ``ſ`` as ``s`` and the Kelvin
    sign as ``k`` (Go's simple folding orbits of s and k; every other non-ASCII rune has no
    ASCII partner, and every Go field name here is ASCII)."""
    return name.replace("\u212a", "k").replace("\u017f", "s").lower()


def json_type_name(value: Any) -> str:
    """The JSON kind of a parsed value (plain or Go-parsed), worded like Go's unmarshal
    errors (`number` without its literal)."""
    if value is None:
        return "null"
    if isinstance(value, GoNumber):
        return "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict | GoObject):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _b64_error_offset(text: str) -> int | None:
    """Where Go's base64.StdEncoding.DecodeString fails on `text` (its CorruptInputError
    offset), or None when it decodes. Padded, ``+/``, CR/LF skipped anywhere, nonzero
    trailing bits tolerated (not Strict): a port of Go's decodeQuantum."""
    src = text.encode("utf-8", "surrogatepass")
    si, n = 0, len(src)
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j  # a short quantum without padding
            c = src[si]
            si += 1
            if c in _B64_ALPHABET:
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D or j < 2:  # not '=', or padding after fewer than 2 symbols
                return si - 1
            if j == 2:  # "==" expected, the first '=' is consumed
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    return n
                if src[si] != 0x3D:
                    return si - 1
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            return si if si < n else None  # trailing garbage after the padding
        # a full quantum: go on


def b64decode_go(text: str, path: str) -> bytes:
    """Go's base64.StdEncoding, the roller's side: the error names the field."""
    offset = _b64_error_offset(text)
    if offset is not None:
        raise WireFormatError(path, f"illegal base64 data at input byte {offset} "
                                    "(padded standard base64 required)")
    return binascii.a2b_base64(text.replace("\r", "").replace("\n", ""))


def _b64decode_go_text(text: str) -> bytes:
    """Go's base64.StdEncoding, the devnet's side: Go's own error text."""
    offset = _b64_error_offset(text)
    if offset is not None:
        raise GoDecodeError(f"illegal base64 data at input byte {offset}")
    return binascii.a2b_base64(text.replace("\r", "").replace("\n", ""))


def b64encode_go(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def go_dumps(value: Mapping[str, Any] | list[Any] | Any) -> str:
    """Compact JSON text as Go's json.Marshal writes it (HTML-safe escapes, \\u00XX for
    control characters but \\n \\r \\t, raw UTF-8 otherwise)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = _GO_HTML_RE.sub(lambda m: _GO_HTML_ESCAPES[m.group(0)], text)
    return _ESCAPE_RE.sub(_go_escape, text)


def _go_escape(match: re.Match[str]) -> str:
    # Python writes \b and \f; Go before 1.22 (the pinned era, see the module docstring)
    # writes the \u form. The regex consumes "\\\\" pairs first, so "\\b" text stays.
    ch = match.group(1)
    if ch == "b":
        return "\\u0008"
    if ch == "f":
        return "\\u000c"
    return match.group(0)


# -- the roller's decoders (json.loads values, errors name the field path) -----------------

def object_members(value: Any, path: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """Map a JSON object onto known member names like Go: case-insensitive (`go_fold`), last
    one wins, unknown members ignored. Returns only the members present."""
    if not isinstance(value, dict):
        raise WireFormatError(path, f"expected object, got {json_type_name(value)}")
    by_fold = {go_fold(f): f for f in fields}
    found: dict[str, Any] = {}
    for key, member in value.items():
        field = by_fold.get(go_fold(key)) if isinstance(key, str) else None
        if field is not None:
            found[field] = member
    return found


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def decode_str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WireFormatError(path, f"expected string, got {json_type_name(value)}")
    # Go replaces unpaired UTF-16 surrogate escapes with U+FFFD when decoding.
    return _SURROGATE_RE.sub("\ufffd", value)


def decode_uint(value: Any, path: str, maximum: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireFormatError(path, f"expected unsigned integer, got {json_type_name(value)}")
    if isinstance(value, float):
        raise WireFormatError(path, f"expected unsigned integer, got fraction {value!r}")
    if value < 0 or value > maximum:
        raise WireFormatError(path, f"value {value} out of range 0..{maximum}")
    return value


def check_uint(value: Any, path: str, maximum: int) -> None:
    """Constructor-side check that a field holds an int in range (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireFormatError(path, f"expected int, got {type(value).__name__}")
    if value < 0 or value > maximum:
        raise WireFormatError(path, f"value {value} out of range 0..{maximum}")


def decode_bytes(value: Any, path: str) -> bytes:
    """A Go []byte member: base64 string; null gives empty; a JSON array of byte numbers is
    also accepted, as Go does."""
    if value is None:
        return b""
    if isinstance(value, str):
        return b64decode_go(value, path)
    if isinstance(value, list):
        return bytes(decode_uint(v, f"{path}[{i}]", UINT8_MAX) for i, v in enumerate(value))
    raise WireFormatError(path, f"expected base64 string, got {json_type_name(value)}")


def encode_bytes(data: bytes) -> str | None:
    """Encode bytes as Go encodes a []byte, mapping empty to a nil slice (``null``)."""
    return b64encode_go(data) if data else None


def parse_hash(value: Any, path: str) -> str:
    """A go-ethereum common.Hash in JSON: string, 0x/0X prefix, exactly 64 hex digits.
    Returns the canonical lowercase ``0x`` form. ``null`` is an error, as in Go."""
    if not isinstance(value, str):
        raise WireFormatError(path, f"expected hash string, got {json_type_name(value)}")
    if not (value.startswith("0x") or value.startswith("0X")):
        raise WireFormatError(path, "hex string without 0x prefix")
    digits = value[2:]
    if not _HEX_RE.fullmatch(digits):
        raise WireFormatError(path, "invalid hex string")
    if len(digits) != 64:
        raise WireFormatError(path, f"hex string has length {len(digits)}, want 64")
    return "0x" + digits.lower()


def format_hash(digest: bytes) -> str:
    if len(digest) != 32:
        raise ValueError(f"hash must be 32 bytes, got {len(digest)}")
    return "0x" + digest.hex()


def decode_list(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Iterate a JSON array as (element path, element); null is an empty list."""
    if value is None:
        return iter(())
    if not isinstance(value, list):
        raise WireFormatError(path, f"expected array, got {json_type_name(value)}")
    return ((f"{path}[{i}]", v) for i, v in enumerate(value))


# -- the devnet's decoder: Go's view of the text, Go's error texts -------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid constant {name}")


_DECODER = json.JSONDecoder(
    object_pairs_hook=GoObject,
    parse_int=GoNumber,
    parse_float=GoNumber,
    parse_constant=_reject_constant,
)


def loads_first(text: str) -> Any:
    """Parse the first JSON value of a message (Go reads one value and ignores the rest);
    objects become `GoObject`, numbers `GoNumber`."""
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise GoSyntaxError("unexpected end of JSON input")
    try:
        value, _ = _DECODER.raw_decode(stripped)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        pos = getattr(exc, "pos", 0)
        if pos >= len(stripped):
            raise GoSyntaxError("unexpected end of JSON input") from None
        where = "looking for beginning of value" if pos == 0 else "in JSON value"
        raise GoSyntaxError(f"invalid character {stripped[pos]!r} {where}") from None
    return value


def to_plain(value: Any) -> Any:
    """Convert parsed values (GoObject, GoNumber) to plain dict/int/float for logging."""
    if isinstance(value, GoObject):
        return {k: to_plain(v) for k, v in value}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, GoNumber):
        return int(value) if _NUM_RE.fullmatch(value) else float(value)
    return value


def raw_id(value: Any) -> str:
    """A parsed value written back compactly as Go echoes a json.RawMessage (a request id):
    number literals verbatim, members in text order."""
    if isinstance(value, GoNumber):
        return str(value)
    if isinstance(value, GoObject):
        return "{" + ",".join(f"{go_dumps(k)}:{raw_id(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(raw_id(v) for v in value) + "]"
    return go_dumps(value)


@dataclass(frozen=True)
class Field:
    """One struct member: JSON name, Go kind (`string`, `uint`, `bytes`, `struct`), Go type
    name for error texts, bit width of a uint, the member struct of a `struct` kind."""

    name: str
    kind: str
    go_type: str
    bits: int = 0
    struct: Struct | None = None

    def __post_init__(self) -> None:
        # go_fold is exact only for ASCII member names (all of Go's tags here are).
        if not self.name.isascii() or self.kind not in _ZEROS:
            raise ValueError(f"bad Go field {self.name!r} of kind {self.kind!r}")


_ZEROS: dict[str, Any] = {"string": "", "uint": 0, "bytes": None, "struct": None}


@dataclass(frozen=True)
class Struct:
    """A Go struct: its Go type name and members in declaration order."""

    go_type: str
    fields: tuple[Field, ...]

    def zero(self) -> dict[str, Any]:
        """Go zero value: "" for strings, 0 for uints, None for byte slices and pointers."""
        return {f.name: _ZEROS[f.kind] for f in self.fields}

    def field(self, key: str) -> Field | None:
        """The member a JSON key fills: an exact match first, else the first by Go's fold."""
        for f in self.fields:
            if f.name == key:
                return f
        folded = go_fold(key)
        return next((f for f in self.fields if go_fold(f.name) == folded), None)


def _type_error(value_text: str, path: str, go_type: str) -> GoDecodeError:
    if path:
        return GoDecodeError(
            f"json: cannot unmarshal {value_text} into Go struct field .{path} of type {go_type}"
        )
    return GoDecodeError(f"json: cannot unmarshal {value_text} into Go value of type {go_type}")


def _is_go_string(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, GoNumber)


def _decode_field(f: Field, value: Any, path: str, current: Any) -> Any:
    if value is None:
        # null leaves value fields untouched and sets pointers and slices to nil.
        return None if f.kind in ("bytes", "struct") else current
    if f.kind == "string":
        if _is_go_string(value):
            return str(value)
        raise _type_error(json_type_name(value), path, f.go_type)
    if f.kind == "uint":
        if isinstance(value, GoNumber):
            if _NUM_RE.fullmatch(value) and 0 <= int(value) < (1 << f.bits):
                return int(value)
            raise _type_error(f"number {value}", path, f.go_type)
        raise _type_error(json_type_name(value), path, f.go_type)
    if f.kind == "bytes":
        if _is_go_string(value):
            return _b64decode_go_text(value)
        if isinstance(value, list) and not isinstance(value, GoObject):
            out = bytearray()
            for i, item in enumerate(value):
                if not (isinstance(item, GoNumber) and _NUM_RE.fullmatch(item)):
                    raise _type_error(json_type_name(item), f"{path}[{i}]", "uint8")
                if not 0 <= int(item) < 256:
                    raise _type_error(f"number {item}", path, "uint8")
                out.append(int(item))
            return bytes(out)
        raise _type_error(json_type_name(value), path, f.go_type)
    if f.struct is None:
        raise ValueError(f"Go field {f.name!r} of kind struct names no struct")
    return decode_struct(f.struct, value, path)


def decode_struct(struct: Struct, value: Any, path: str = "") -> dict[str, Any] | None:
    """Decode a `loads_first` value into a canonical dict with every member (Go zero values
    filled in). Returns None for `null` (a nil pointer); raises GoDecodeError with Go's text
    otherwise."""
    if value is None:
        return None
    if not isinstance(value, GoObject):
        raise _type_error(json_type_name(value), path, struct.go_type)
    out = struct.zero()
    for key, item in value:
        f = struct.field(key)
        if f is None:
            continue
        sub = f"{path}.{f.name}" if path else f.name
        out[f.name] = _decode_field(f, item, sub, out[f.name])
    return out


def decode_string(value: Any, go_type: str = "string") -> str:
    """Decode a top-level string param (e.g. an rpc.ID); null gives ""."""
    if value is None:
        return ""
    if _is_go_string(value):
        return str(value)
    raise _type_error(json_type_name(value), "", go_type)
