"""The C ABI is declared once: the cffi declarations come from the native header.

No library is loaded here (tests/test_native_ffi.py loads it and checks every declared function
resolves): this holds the header, the package's copy of it, and the Rust exports together, and
pins what the header reading keeps and refuses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cffi import FFI

import roller.ffi.abi
from roller.errors import ProverError
from roller.ffi.abi import ABI_VERSION_NAME, HEADER, cdef_of_header, roller_declarations
from roller.ffi.native import ffi_of, roller_ffi

NATIVE = Path(__file__).resolve().parents[1] / "native"


def declared_functions(ffi: FFI) -> set[str]:
    # cffi has no public listing of a cdef's functions; its parser keeps them by kind and name.
    return {name.split()[1] for name in ffi._parser._declarations if name.startswith("function ")}


def test_the_package_ships_the_native_header() -> None:
    assert HEADER.read_bytes() == (NATIVE / "include" / "roller_prover.h").read_bytes()


def test_the_header_declares_what_the_rust_library_exports() -> None:
    ffi_rs = (NATIVE / "src" / "ffi.rs").read_text()
    exported = set(re.findall(r'extern "C" fn (\w+)', ffi_rs))
    assert declared_functions(roller_ffi()) == exported
    rust_version = re.search(r"pub const ABI_VERSION: c_uint = (\d+);", ffi_rs)
    assert rust_version is not None
    assert roller_declarations().constant(ABI_VERSION_NAME) == int(rust_version[1])


def test_guard_and_cplusplus_blocks_go_integer_defines_stay() -> None:
    header = """/* doc
 * # not a directive */
#ifndef GUARD_H
#define GUARD_H
#define VERSION 7
#define FLAGS 0x10
#ifdef __cplusplus
extern "C" {
#endif
int f(const char *s); // a comment
#ifdef __cplusplus
}
#endif
#endif /* GUARD_H */
"""
    out = cdef_of_header(header, "t.h")
    assert dict(out.constants) == {"VERSION": 7, "FLAGS": 16}
    assert out.cdef.count("\n") == header.count("\n")  # cdef's messages name header lines
    assert [line for line in out.cdef.splitlines() if line.strip()] == [
        "#define VERSION 7", "#define FLAGS 0x10", "int f(const char *s); "]
    ffi = FFI()
    ffi.cdef(out.cdef)
    assert declared_functions(ffi) == {"f"}


@pytest.mark.parametrize(("header", "error"), [
    ("#include <stdint.h>\nint f(void);\n", r"t\.h:1: cffi's cdef cannot take `#include <s"),
    ("#if X\n#endif\n", r"t\.h:1: .*`#if X`"),
    ("#define NAME \"text\"\n", r"t\.h:1: .*`#define NAME \"text\"`"),
    ("#define FLAG\n", r"t\.h:1: .*`#define FLAG`"),
    ("#ifdef __cplusplus\n#define X 1\n#endif\n", r"t\.h:2: a directive inside a C\+\+-only"),
    ("#ifndef G\n#define G\n", r"t\.h: 1 conditional block\(s\) without #endif"),
    ("#endif\n", r"t\.h:1: .*`#endif`"),
])
def test_what_needs_a_preprocessor_is_refused(header: str, error: str) -> None:
    with pytest.raises(ProverError, match=error):
        cdef_of_header(header, "t.h")


def test_a_missing_constant_names_the_header() -> None:
    with pytest.raises(ProverError, match=r"t\.h: no `#define ROLLER_PROVER_ABI_VERSION"):
        cdef_of_header("int f(void);\n", "t.h").constant(ABI_VERSION_NAME)


def test_a_declaration_cdef_cannot_parse_names_the_header() -> None:
    with pytest.raises(ProverError, match=r"^t\.h: cannot parse \"int g\(;\"\n.*:2:"):
        ffi_of(cdef_of_header("int f(void);\nint g(;\n", "t.h"))


def test_a_missing_header_is_a_prover_error(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(roller.ffi.abi, "HEADER", tmp_path / "roller_prover.h")
    # The uncached reading: the process's cached one stays as it is.
    with pytest.raises(ProverError, match="prover ABI header unreadable: .*roller_prover.h"):
        roller_declarations.__wrapped__()
