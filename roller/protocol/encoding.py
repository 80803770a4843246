"""Go `encoding/json` decoding and encoding rules for the coordinator's wire messages.

Decoders take an already parsed JSON value (``json.loads`` output) plus the dotted field path
used in error messages, and behave like Go unmarshalling into the corresponding Go type:
``null`` leaves the zero value, uint fields reject strings, fractions, negatives and
out-of-range numbers, ``[]byte`` takes padded standard base64, ``common.Hash`` takes ``0x``
plus 64 hex digits.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from roller.errors import WireFormatError

UINT8_MAX = 0xFF
UINT32_MAX = 0xFFFF_FFFF
UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF

_B64_RE = re.compile(r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ESCAPE_RE = re.compile(r"\\(.)")
# Go's encoder escapes these even inside strings (HTML safety, JS line terminators).
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                    "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML_RE = re.compile("[<>&\u2028\u2029]")


def json_type_name(value: Any) -> str:
    """The JSON kind of a parsed value, worded like Go's unmarshal errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fold(name: str) -> str:
    # Go's case-insensitive member match also folds the Kelvin sign and long s.
    return name.replace("\u212a", "k").replace("\u017f", "s").lower()


def object_members(value: Any, path: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """Map a JSON object onto known member names like Go: case-insensitive, last one wins,
    unknown members ignored. Returns only the members present."""
    if not isinstance(value, dict):
        raise WireFormatError(path, f"expected object, got {json_type_name(value)}")
    by_fold = {_fold(f): f for f in fields}
    found: dict[str, Any] = {}
    for key, member in value.items():
        field = by_fold.get(_fold(key)) if isinstance(key, str) else None
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


def b64decode_go(text: str, path: str) -> bytes:
    """Go's base64.StdEncoding: padded, '+/' alphabet, CR/LF ignored, nonzero trailing bits
    tolerated."""
    s = text.replace("\r", "").replace("\n", "")
    if len(s) % 4 != 0 or not _B64_RE.fullmatch(s):
        raise WireFormatError(path, "illegal base64 data (padded standard base64 required)")
    return binascii.a2b_base64(s)


def b64encode_go(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


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


def go_dumps(value: Mapping[str, Any] | list[Any] | Any) -> str:
    """Compact JSON text as Go's json.Marshal writes it (HTML-safe escapes, \\u00XX for
    control characters, raw UTF-8 otherwise)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = _GO_HTML_RE.sub(lambda m: _GO_HTML_ESCAPES[m.group(0)], text)
    return _ESCAPE_RE.sub(_go_escape, text)


def _go_escape(match: re.Match[str]) -> str:
    # Python writes \b and \f; Go (pinned era) writes the \u form.
    ch = match.group(1)
    if ch == "b":
        return "\\u0008"
    if ch == "f":
        return "\\u000c"
    return match.group(0)
