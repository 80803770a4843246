"""cffi declarations (ABI mode) of the prover libraries the roller can load.

The roller's own ABI is declared once, in the native library's C header
(native/include/roller_prover.h). The package ships it as roller/ffi/roller_prover.h (a link
to that file in the repository, a copy in a wheel), and the cffi declarations and the ABI
version a library must report are read from it, so the header and the Python side cannot
drift apart; cargo's tests hold the Rust side to the header's version. The seed-era libzkp
has no header of ours: its declarations are written here.

Failure model: a header that is missing, or holds what cffi's cdef cannot take, is a
ProverError naming the header (and the line), raised when a roller-ABI library is loaded, so a
worker's start check reports it in one line; the mock and the seed ABI never read the header.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from roller.errors import ProverError

HEADER = Path(__file__).resolve().parent / "roller_prover.h"
# The header's `#define` of what prover_abi_version() returns.
ABI_VERSION_NAME = "ROLLER_PROVER_ABI_VERSION"

# Bytes of a chunk instance (roller_prover.h): ... | commitment | len u64 | block count u64.
CHUNK_INSTANCE_LEN = 216
# Offset of the per-chunk data hashes in a batch instance (roller_prover.h).
BATCH_DATA_HASHES = 152

# Seed-era Scroll libzkp (coordinator-protocol.md section 7). free_c_chars exists only in later
# libraries; it is looked up lazily and used when present.
SEED_CDEF = """
void init_prover(char *params_path, char *seed_path);
char *create_agg_proof_multi(char *trace);
void init_verifier(char *params_path, char *agg_vk_path);
char verify_agg_proof(char *proof);
void free_c_chars(char *ptr);
"""

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DIRECTIVE = re.compile(r"#\s*(\w+)\s*(.*)")
_NAME = re.compile(r"[A-Za-z_]\w*")
_INTEGER_DEFINE = re.compile(r"([A-Za-z_]\w*)\s+(0[xX][0-9a-fA-F]+|[1-9]\d*|0)")


@dataclass(frozen=True)
class HeaderDeclarations:
    """A C header as cffi's cdef takes it: `cdef` (declarations and integer `#define`s) and
    those integer constants by name; `source` names the header in errors."""

    source: str
    cdef: str
    constants: Mapping[str, int]

    def constant(self, name: str) -> int:
        try:
            return self.constants[name]
        except KeyError:
            raise ProverError(f"{self.source}: no `#define {name} <integer>`") from None


def cdef_of_header(text: str, source: str = "header") -> HeaderDeclarations:
    """The declarations of a C header, minus what cffi's cdef cannot take.

    cdef parses declarations and `#define NAME <integer>`, but runs no preprocessor. So this
    drops the comments (keeping the line count, for cdef's messages), the include guard's
    `#ifndef NAME` / `#define NAME` / `#endif` (the block's content is kept), and
    `#ifdef __cplusplus` blocks whole (the `extern "C"` braces, read by C++ alone). Any other
    directive (`#include`, `#if`, a macro that is not an integer) raises ProverError naming
    `source` and the line: a header that needs a real preprocessor is refused, not half read.
    """
    lines = _COMMENT.sub(lambda m: "\n" * m.group().count("\n"), text).splitlines()
    kept: list[str] = []
    constants: dict[str, int] = {}
    # The open conditional blocks, innermost last: a guard's name, or None for C++ only.
    blocks: list[str | None] = []
    for number, line in enumerate(lines, 1):
        directive = _DIRECTIVE.fullmatch(line.strip())
        if directive is None:
            kept.append("" if None in blocks else line)
            continue
        kept.append("")
        word, rest = directive.groups()
        if word == "endif" and blocks:
            blocks.pop()
        elif None in blocks:
            raise ProverError(f"{source}:{number}: a directive inside a C++-only block")
        elif word == "ifdef" and rest == "__cplusplus":
            blocks.append(None)
        elif word == "ifndef" and _NAME.fullmatch(rest):
            blocks.append(rest)
        elif word == "define" and rest in blocks:
            pass  # the include guard's own name
        elif word == "define" and (constant := _INTEGER_DEFINE.fullmatch(rest)):
            constants[constant[1]] = int(constant[2], 0)
            kept[-1] = line
        else:
            raise ProverError(f"{source}:{number}: cffi's cdef cannot take `{line.strip()}`")
    if blocks:
        raise ProverError(f"{source}: {len(blocks)} conditional block(s) without #endif")
    return HeaderDeclarations(source, "\n".join(kept) + "\n", MappingProxyType(constants))


@functools.cache
def roller_declarations() -> HeaderDeclarations:
    """The roller ABI as the shipped header declares it, read once per process."""
    try:
        text = HEADER.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProverError(f"prover ABI header unreadable: {exc}") from exc
    return cdef_of_header(text, str(HEADER))
