"""Loads a prover library with cffi (ABI mode) and wraps it in the `Prover` protocol.

Two ABIs: "roller" (native/include/roller_prover.h, the embedded default) and "seed" (the
seed-era Scroll libzkp: init_prover + create_agg_proof_multi). cffi releases the GIL for the
duration of every foreign call, so other Python threads (heartbeats, Celery) keep running while a
proof is computed. Libraries are opened and initialised lazily, once per process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from cffi import FFI

from roller.errors import ProverError
from roller.ffi.abi import ROLLER_ABI_VERSION, ROLLER_CDEF, SEED_CDEF

log = logging.getLogger(__name__)

LIBRARY_NAME = "libroller_prover.so"
_PACKAGE_LIB = Path(__file__).resolve().parent / "lib" / LIBRARY_NAME
_REPO_LIB = Path(__file__).resolve().parents[2] / "native" / "target" / "release" / LIBRARY_NAME

_roller_ffi = FFI()
_roller_ffi.cdef(ROLLER_CDEF)
_seed_ffi = FFI()
_seed_ffi.cdef(SEED_CDEF)

_lock = threading.Lock()
# (pid, abi, library path, params dir, seed path) -> prover; pid-keyed so a forked child re-inits.
_provers: dict[tuple[int, str, str, str, str | None], Prover] = {}
# (pid, library path, kind) -> params dir the library's global slot is initialised with.
_initialised: dict[tuple[int, str, str], str] = {}
_seed_inits: dict[tuple[int, str, str], bool] = {}


class Prover(Protocol):
    """What the worker needs from a prover; every method may raise ProverError."""

    def warm_up(self, prove_type: int) -> None:
        """Initialise what proving `prove_type` (0 chunk, 1 batch) needs, before a job."""

    def gen_chunk_proof(self, traces_json: str) -> str: ...

    def gen_batch_proof(self, chunk_proofs_json: str) -> str: ...

    def verify_chunk_proof(self, proof_json: str) -> bool: ...

    def verify_batch_proof(self, proof_json: str) -> bool: ...


def default_library_path() -> str:
    """ROLLER_PROVER_LIB, else the library installed in the package, else the cargo output."""
    env = os.environ.get("ROLLER_PROVER_LIB")
    if env:
        return env
    if _PACKAGE_LIB.exists():
        return str(_PACKAGE_LIB)
    return str(_REPO_LIB)


def _dlopen(ffi: FFI, path: str) -> Any:
    if not Path(path).exists():
        raise ProverError(
            f"prover library not found: {path} (build it with `python -m roller.ffi.build`)"
        )
    try:
        return ffi.dlopen(path)
    except OSError as e:
        raise ProverError(f"cannot load prover library {path}: {e}") from e


def _take_string(ffi: FFI, lib: Any, ptr: Any) -> str:
    """Copies a library-allocated string and frees it with the library's free_c_chars."""
    try:
        return bytes(ffi.string(ptr)).decode("utf-8", errors="replace")
    finally:
        lib.free_c_chars(ptr)


class RollerProver:
    """The roller's native prover (ABI version 1)."""

    def __init__(self, library_path: str, params_dir: str) -> None:
        self._path = library_path
        self._params = params_dir
        self._lib = _dlopen(_roller_ffi, library_path)
        version = self._lib.prover_abi_version()
        if version != ROLLER_ABI_VERSION:
            raise ProverError(
                f"{library_path}: prover ABI version {version}, expected {ROLLER_ABI_VERSION}"
            )

    def _last_error(self) -> str:
        return _take_string(_roller_ffi, self._lib, self._lib.prover_last_error())

    def _ensure(self, kind: str) -> None:
        key = (os.getpid(), self._path, kind)
        with _lock:
            if _initialised.get(key) == self._params:
                return
            log.info("prover init kind=%s params_dir=%s", kind, self._params)
            status = getattr(self._lib, f"init_{kind}")(self._params.encode())
            if status != 0:
                raise ProverError(f"init_{kind} failed: {self._last_error()}")
            _initialised[key] = self._params

    def _call_json(self, kind: str, func: str, arg: str) -> str:
        self._ensure(kind)
        ptr = getattr(self._lib, func)(arg.encode())
        if ptr == _roller_ffi.NULL:
            raise ProverError(f"{func} returned NULL")
        text = _take_string(_roller_ffi, self._lib, ptr)
        try:
            parsed = json.loads(text)
        except ValueError as e:
            raise ProverError(f"{func} returned invalid JSON: {e}") from e
        if isinstance(parsed, dict) and "error" in parsed:
            raise ProverError(str(parsed["error"]))
        return text

    def _verify(self, kind: str, func: str, proof_json: str) -> bool:
        self._ensure(kind)
        ok = ord(getattr(self._lib, func)(proof_json.encode())) == 1
        if not ok:
            log.info("proof rejected func=%s reason=%s", func, self._last_error())
        return ok

    def warm_up(self, prove_type: int) -> None:
        self._ensure("batch_prover" if prove_type else "chunk_prover")

    def gen_chunk_proof(self, traces_json: str) -> str:
        return self._call_json("chunk_prover", "gen_chunk_proof", traces_json)

    def gen_batch_proof(self, chunk_proofs_json: str) -> str:
        return self._call_json("batch_prover", "gen_batch_proof", chunk_proofs_json)

    def verify_chunk_proof(self, proof_json: str) -> bool:
        return self._verify("chunk_verifier", "verify_chunk_proof", proof_json)

    def verify_batch_proof(self, proof_json: str) -> bool:
        return self._verify("batch_verifier", "verify_batch_proof", proof_json)

    def chunk_info(self, traces_json: str) -> dict[str, Any]:
        """Scroll chunk info of the traces, without proving (no ordering checks)."""
        ptr = self._lib.block_traces_to_chunk_info(traces_json.encode())
        info = json.loads(_take_string(_roller_ffi, self._lib, ptr))
        if "error" in info:
            raise ProverError(str(info["error"]))
        return dict(info)


class SeedProver:
    """Adapter for the seed-era Scroll libzkp (coordinator-protocol.md section 7).

    init_prover panics (aborting the process) on bad params and on a second call, so it is called
    at most once per process and library. Result strings are freed only if the library exports
    free_c_chars (the seed library does not: the Go roller leaked them too).
    """

    def __init__(self, library_path: str, params_dir: str, seed_path: str | None) -> None:
        if not seed_path:
            raise ProverError("the seed prover ABI needs a seed path")
        self._path = library_path
        self._params = params_dir
        self._seed = seed_path
        self._lib = _dlopen(_seed_ffi, library_path)

    def _init_once(self, kind: str, func: str, second: str) -> None:
        key = (os.getpid(), self._path, kind)
        with _lock:
            if _seed_inits.get(key):
                return
            try:
                init = getattr(self._lib, func)
            except AttributeError as e:
                raise ProverError(f"{self._path} does not export {func}") from e
            log.info("seed prover init func=%s params_dir=%s", func, self._params)
            init(self._params.encode(), second.encode())
            _seed_inits[key] = True

    def _string(self, ptr: Any) -> str:
        text = bytes(_seed_ffi.string(ptr)).decode("utf-8", errors="replace")
        try:
            self._lib.free_c_chars(ptr)
        except AttributeError:
            pass
        return text

    def warm_up(self, prove_type: int) -> None:
        self._init_once("prover", "init_prover", self._seed)

    def gen_chunk_proof(self, traces_json: str) -> str:
        self._init_once("prover", "init_prover", self._seed)
        ptr = self._lib.create_agg_proof_multi(traces_json.encode())
        if ptr == _seed_ffi.NULL:
            # What the Go roller reported: it decoded the NULL result as an empty string.
            raise ProverError("unexpected end of JSON input")
        text = self._string(ptr)
        try:
            json.loads(text)
        except ValueError as e:
            raise ProverError(f"create_agg_proof_multi returned invalid JSON: {e}") from e
        return text

    def gen_batch_proof(self, chunk_proofs_json: str) -> str:
        raise ProverError("batch proofs are not supported by the seed-era prover ABI")

    def _verify(self, proof_json: str) -> bool:
        agg_vk = os.environ.get("ROLLER_SEED_AGG_VK", os.path.join(self._params, "agg_vk"))
        self._init_once("verifier", "init_verifier", agg_vk)
        try:
            verify = self._lib.verify_agg_proof
        except AttributeError as e:
            raise ProverError(f"{self._path} does not export verify_agg_proof") from e
        return ord(verify(proof_json.encode())) == 1

    def verify_chunk_proof(self, proof_json: str) -> bool:
        return self._verify(proof_json)

    def verify_batch_proof(self, proof_json: str) -> bool:
        raise ProverError("batch proofs are not supported by the seed-era prover ABI")


def load_prover(
    library_path: str | None,
    params_dir: str,
    abi: str = "roller",
    seed_path: str | None = None,
) -> Prover:
    """Returns the process-wide prover for this library and params dir (opened on first use).

    Initialisation of each kind (chunk/batch prover/verifier) happens on its first call, so a
    Celery parent process that only loads the module never starts prover threads before fork.
    """
    path = library_path or default_library_path()
    key = (os.getpid(), abi, os.path.realpath(path), params_dir, seed_path)
    with _lock:
        prover = _provers.get(key)
    if prover is not None:
        return prover
    if abi == "roller":
        prover = RollerProver(key[2], params_dir)
    elif abi == "seed":
        prover = SeedProver(key[2], params_dir, seed_path)
    else:
        raise ProverError(f"unknown prover ABI {abi!r} (expected 'roller' or 'seed')")
    with _lock:
        return _provers.setdefault(key, prover)
