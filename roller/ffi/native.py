"""Loads a prover library with cffi (ABI mode) and wraps it in the `Prover` protocol.

Two ABIs: "roller" (native/include/roller_prover.h, the embedded default) and "seed" (the
seed-era Scroll libzkp: init_prover + create_agg_proof_multi). cffi releases the GIL for the
duration of every foreign call, so other Python threads (heartbeats, Celery) keep running while a
proof is computed. Libraries are opened and initialised lazily, once per process.

Verification is of a proof *for a task*: the roller ABI's verifiers take the chunk info the task
determines (`chunk_info` of the task's traces; for a batch the ordered chunk infos of its
sub-proofs; for a bundle the ordered batch infos of its batch sub-proofs) and refuse, naming the
field, a valid proof of anything else. The seed ABI's
verify_agg_proof takes no task: its verdict is "some valid proof" only, and is logged as such.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from cffi import FFI, CDefError

from roller.errors import ProverError
from roller.ffi.abi import (
    ABI_VERSION_NAME,
    BATCH_DATA_HASHES,
    CHUNK_INSTANCE_LEN,
    SEED_CDEF,
    HeaderDeclarations,
    roller_declarations,
)
from roller.forks import PRE_FORK

log = logging.getLogger(__name__)

LIBRARY_NAME = "libroller_prover.so"
_PACKAGE_LIB = Path(__file__).resolve().parent / "lib" / LIBRARY_NAME
_REPO_LIB = Path(__file__).resolve().parents[2] / "native" / "target" / "release" / LIBRARY_NAME

_seed_ffi = FFI()
_seed_ffi.cdef(SEED_CDEF)

_lock = threading.Lock()
# (pid, abi, library path, params dir, seed path, chain id) -> prover; pid-keyed so a forked child
# re-inits.
_provers: dict[tuple[int, str, str, str, str | None, int | None, str], Prover] = {}
# (pid, library path, kind, fork) -> params dir that fork's slot in the library is
# initialised with.
_initialised: dict[tuple[int, str, str, str], str] = {}
_seed_inits: dict[tuple[int, str, str], bool] = {}


class Prover(Protocol):
    """What the worker needs from a prover; every method may raise ProverError. Every prove
    and verify names its hard fork (roller.forks): each fork's circuits are its own."""

    def warm_up(self, prove_type: int, fork: str = PRE_FORK) -> None:
        """Initialise what proving `prove_type` under `fork` needs, before a job: 0 chunk; 1
        batch and bundle (a batch prover slot proves both, spec 5.1); 2 bundle."""

    def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str: ...

    def gen_batch_proof(self, chunk_proofs_json: str, fork: str = PRE_FORK) -> str: ...

    def gen_bundle_proof(self, batch_proofs_json: str, fork: str = PRE_FORK) -> str: ...

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str,
                           fork: str = PRE_FORK) -> bool: ...

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str,
                           fork: str = PRE_FORK) -> bool: ...

    def verify_bundle_proof(self, proof_json: str, batch_infos_json: str,
                            fork: str = PRE_FORK) -> bool: ...


def default_library_path() -> str:
    """ROLLER_PROVER_LIB, else the library installed in the package, else the cargo output."""
    env = os.environ.get("ROLLER_PROVER_LIB")
    if env:
        return env
    if _PACKAGE_LIB.exists():
        return str(_PACKAGE_LIB)
    return str(_REPO_LIB)


def ffi_of(declarations: HeaderDeclarations) -> FFI:
    """An FFI declaring a header's functions; ProverError naming the header if cdef cannot
    parse one of its declarations."""
    ffi = FFI()
    try:
        ffi.cdef(declarations.cdef)
    except CDefError as exc:
        raise ProverError(f"{declarations.source}: {exc}") from exc
    return ffi


@functools.cache
def roller_ffi() -> FFI:
    """The roller ABI's declarations, from the shipped header, built on the first load of a
    roller-ABI library (the mock and the seed ABI never need them)."""
    return ffi_of(roller_declarations())


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


def chunk_info_of_instance(instance: bytes, block_count: int) -> dict[str, Any]:
    """The chunk info fields a verified chunk proof's instance carries (roller_prover.h layout);
    a batch task's expected chunk infos, from the sub-proofs the coordinator verified and served."""
    if len(instance) != CHUNK_INSTANCE_LEN:
        raise ProverError(
            f"chunk instance: {len(instance)} bytes, expected {CHUNK_INSTANCE_LEN}"
        )

    def hex_at(start: int) -> str:
        return "0x" + instance[start : start + 32].hex()

    return {
        "chain_id": int.from_bytes(instance[0:8], "big"),
        "prev_state_root": hex_at(8),
        "post_state_root": hex_at(40),
        "withdraw_root": hex_at(72),
        "data_hash": hex_at(104),
        # Under codec v1+ it also commits to the chunk's L2 tx bytes, which the other fields
        # do not carry: a batch verifier needs it to check the commitment over its chunks.
        "public_input_hash": hex_at(136),
        "commitment": hex_at(168),
        "len": int.from_bytes(instance[200:208], "big"),
        "block_count": block_count,
    }


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def batch_info_of_instance(instance: bytes, block_count: int) -> dict[str, Any]:
    """The batch info a verified batch proof's instance carries (roller_prover.h layout): a
    bundle task's expected batch infos, from the batch sub-proofs the coordinator served."""
    if len(instance) < BATCH_DATA_HASHES or (len(instance) - BATCH_DATA_HASHES) % 32:
        raise ProverError(f"batch instance: {len(instance)} bytes, expected "
                          f"{BATCH_DATA_HASHES} + 32 per chunk")
    hashes = [_hex(instance[i:i + 32]) for i in range(BATCH_DATA_HASHES, len(instance), 32)]
    return {
        "chain_id": int.from_bytes(instance[0:8], "big"),
        "prev_state_root": _hex(instance[8:40]),
        "post_state_root": _hex(instance[40:72]),
        "withdraw_root": _hex(instance[72:104]),
        "commitment": _hex(instance[104:136]),
        "chunk_count": int.from_bytes(instance[136:144], "big"),
        "block_count": block_count,
        "data_hashes": hashes,
    }


class RollerProver:
    """The roller's native prover (ABI version 4): one library that knows every hard fork;
    each call names its fork, and each fork's circuits are initialised apart (its params in
    `fork_params[fork]`, else `params_dir`).

    The ABI's one error convention: a call returns its failure value (init non-zero, a NULL
    result, verify 0) and prover_last_error, read on the same thread right after, says why;
    every failure becomes a ProverError with that message (verify: a rejection reason).

    `chain_id`: the chain the roller proves for (configuration); None means the traces must name
    it (`chainID`). Either way the native side refuses traces naming another chain.
    """

    def __init__(self, library_path: str, params_dir: str, chain_id: int | None = None,
                 fork_params: dict[str, str] | None = None) -> None:
        self._path = library_path
        self._params = params_dir
        self._fork_params = dict(fork_params or {})
        self._chain_id = chain_id
        self._ffi = roller_ffi()
        self._lib = _dlopen(self._ffi, library_path)
        version = self._lib.prover_abi_version()
        expected = roller_declarations().constant(ABI_VERSION_NAME)
        if version != expected:
            raise ProverError(
                f"{library_path}: prover ABI version {version}, expected {expected}"
            )

    def _last_error(self) -> str:
        return _take_string(self._ffi, self._lib, self._lib.prover_last_error())

    def _ensure(self, kind: str, fork: str) -> None:
        key = (os.getpid(), self._path, kind, fork)
        params = self._fork_params.get(fork, self._params)
        with _lock:
            if _initialised.get(key) == params:
                return
            log.info("prover init kind=%s fork=%s params_dir=%s", kind, fork, params)
            status = getattr(self._lib, f"init_{kind}")(params.encode(), fork.encode())
            if status != 0:
                raise ProverError(f"init_{kind} failed for fork {fork}: {self._last_error()}")
            _initialised[key] = params

    def _call_json(self, kind: str, func: str, arg: str, fork: str) -> str:
        self._ensure(kind, fork)
        return self._checked_json(func, getattr(self._lib, func)(arg.encode(), fork.encode()))

    def _checked_json(self, func: str, ptr: Any) -> str:
        """The library's JSON result; NULL (the ABI's failure value, the message in
        prover_last_error on this thread) becomes a ProverError."""
        if ptr == self._ffi.NULL:
            raise ProverError(self._last_error() or f"{func} failed without a message")
        text = _take_string(self._ffi, self._lib, ptr)
        try:
            json.loads(text)
        except ValueError as e:
            raise ProverError(f"{func} returned invalid JSON: {e}") from e
        return text

    def _rejection(self, kind: str, func: str, proof_json: str, task_json: str,
                   fork: str) -> str | None:
        self._ensure(kind, fork)
        # prover_last_error is per thread on the native side: read on the calling thread.
        if ord(getattr(self._lib, func)(proof_json.encode(), task_json.encode(),
                                        fork.encode())) == 1:
            return None
        reason = self._last_error()
        log.info("proof rejected func=%s reason=%r", func, reason)
        return reason or "rejected"

    def warm_up(self, prove_type: int, fork: str = PRE_FORK) -> None:
        if prove_type == 0:
            self._ensure("chunk_prover", fork)
            return
        if prove_type == 1:
            self._ensure("batch_prover", fork)
        self._ensure("bundle_prover", fork)

    def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
        self._ensure("chunk_prover", fork)
        ptr = self._lib.gen_chunk_proof(traces_json.encode(), self._chain_id or 0,
                                        fork.encode())
        return self._checked_json("gen_chunk_proof", ptr)

    def gen_batch_proof(self, chunk_proofs_json: str, fork: str = PRE_FORK) -> str:
        return self._call_json("batch_prover", "gen_batch_proof", chunk_proofs_json, fork)

    def gen_bundle_proof(self, batch_proofs_json: str, fork: str = PRE_FORK) -> str:
        return self._call_json("bundle_prover", "gen_bundle_proof", batch_proofs_json, fork)

    def chunk_proof_rejection(self, proof_json: str, chunk_info_json: str,
                              fork: str = PRE_FORK) -> str | None:
        """None if the proof is a valid proof of the task with this chunk info, else why not."""
        return self._rejection("chunk_verifier", "verify_chunk_proof", proof_json,
                               chunk_info_json, fork)

    def batch_proof_rejection(self, proof_json: str, chunk_infos_json: str,
                              fork: str = PRE_FORK) -> str | None:
        """None if the proof is a valid proof of the batch of these ordered chunk infos."""
        return self._rejection("batch_verifier", "verify_batch_proof", proof_json,
                               chunk_infos_json, fork)

    def bundle_proof_rejection(self, proof_json: str, batch_infos_json: str,
                               fork: str = PRE_FORK) -> str | None:
        """None if the proof is a valid proof of the bundle of these ordered batch infos."""
        return self._rejection("bundle_verifier", "verify_bundle_proof", proof_json,
                               batch_infos_json, fork)

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str,
                           fork: str = PRE_FORK) -> bool:
        return self.chunk_proof_rejection(proof_json, chunk_info_json, fork) is None

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str,
                           fork: str = PRE_FORK) -> bool:
        return self.batch_proof_rejection(proof_json, chunk_infos_json, fork) is None

    def verify_bundle_proof(self, proof_json: str, batch_infos_json: str,
                            fork: str = PRE_FORK) -> bool:
        return self.bundle_proof_rejection(proof_json, batch_infos_json, fork) is None

    def vk(self, prove_type: int, fork: str, role: str = "prover") -> str:
        """The verifying key (base64, as proofs carry it in `vk`) of `fork`'s circuit for
        `prove_type` (0 chunk, 1 batch, 2 bundle): what a login presents (H3+). `role`:
        which of the fork's circuits to initialise for it, "prover" or "verifier"."""
        self._ensure(f"{('chunk', 'batch', 'bundle')[prove_type]}_{role}", fork)
        ptr = self._lib.get_vk(prove_type, fork.encode())
        if ptr == self._ffi.NULL:
            raise ProverError(self._last_error() or "get_vk failed without a message")
        return _take_string(self._ffi, self._lib, ptr)

    def forks(self) -> list[str]:
        """The hard forks this library knows (Scroll's spelling, chain order)."""
        return [str(f) for f in json.loads(self._checked_json("prover_forks",
                                                              self._lib.prover_forks()))]

    def batch_chunk_infos(self, chunk_traces: list[str],
                          fork: str = PRE_FORK) -> list[dict[str, Any]]:
        """Chunk infos of a batch's chunks (traces JSON each, in chain order), with the L1
        messages popped carried from each chunk to the next, as Scroll's codec does (a
        count the traces leave unknown, null, is not carried)."""
        infos: list[dict[str, Any]] = []
        popped: int | None = None
        for traces in chunk_traces:
            info = self.chunk_info(traces, l1_messages_popped_before=popped, fork=fork)
            after = info.get("l1_messages_popped_after")
            popped = None if after is None else int(after)
            infos.append(info)
        return infos

    def chunk_info(
        self,
        traces_json: str,
        chain_id: int | None = None,
        l1_messages_popped_before: int | None = None,
        fork: str = PRE_FORK,
    ) -> dict[str, Any]:
        """Scroll chunk info of the traces, without proving (no ordering checks).

        `chain_id` defaults to this prover's; `l1_messages_popped_before` (the previous chunk's
        `l1_messages_popped_after` within a batch) defaults to what the traces say.
        """
        chain = chain_id if chain_id is not None else self._chain_id
        popped = -1 if l1_messages_popped_before is None else l1_messages_popped_before
        ptr = self._lib.block_traces_to_chunk_info(traces_json.encode(), chain or 0, popped,
                                                   fork.encode())
        return dict(json.loads(self._checked_json("block_traces_to_chunk_info", ptr)))


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

    @staticmethod
    def _pre_fork(fork: str) -> None:
        """The seed library predates forks: it proves homestead's rules only."""
        if fork != PRE_FORK:
            raise ProverError(f"hard fork {fork} not supported by the seed-era prover ABI")

    def warm_up(self, prove_type: int, fork: str = PRE_FORK) -> None:
        self._pre_fork(fork)
        self._init_once("prover", "init_prover", self._seed)

    def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
        self._pre_fork(fork)
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

    def gen_batch_proof(self, chunk_proofs_json: str, fork: str = PRE_FORK) -> str:
        raise ProverError("batch proofs are not supported by the seed-era prover ABI")

    def gen_bundle_proof(self, batch_proofs_json: str, fork: str = PRE_FORK) -> str:
        raise ProverError("bundle proofs are not supported by the seed-era prover ABI")

    def _verify(self, proof_json: str) -> bool:
        # verify_agg_proof takes no task: this says "some valid proof", not "a proof of the task".
        log.warning("seed verifier checks no task: instance not compared with the task")
        agg_vk = os.environ.get("ROLLER_SEED_AGG_VK", os.path.join(self._params, "agg_vk"))
        self._init_once("verifier", "init_verifier", agg_vk)
        try:
            verify = self._lib.verify_agg_proof
        except AttributeError as e:
            raise ProverError(f"{self._path} does not export verify_agg_proof") from e
        return ord(verify(proof_json.encode())) == 1

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str = "",
                           fork: str = PRE_FORK) -> bool:
        self._pre_fork(fork)
        return self._verify(proof_json)

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str = "",
                           fork: str = PRE_FORK) -> bool:
        raise ProverError("batch proofs are not supported by the seed-era prover ABI")

    def verify_bundle_proof(self, proof_json: str, batch_infos_json: str = "",
                            fork: str = PRE_FORK) -> bool:
        raise ProverError("bundle proofs are not supported by the seed-era prover ABI")


def load_prover(
    library_path: str | None,
    params_dir: str,
    abi: str = "roller",
    seed_path: str | None = None,
    chain_id: int | None = None,
    fork_params: dict[str, str] | None = None,
) -> Prover:
    """Returns the process-wide prover for this library and params dir (opened on first use).

    `chain_id` (roller ABI): the chain proved for; None = the traces' chainID, required then.

    Initialisation of each kind (chunk/batch/bundle prover/verifier) happens on its first call, so a
    Celery parent process that only loads the module never starts prover threads before fork.
    """
    path = library_path or default_library_path()
    forks = json.dumps(fork_params or {}, sort_keys=True)
    key = (os.getpid(), abi, os.path.realpath(path), params_dir, seed_path, chain_id, forks)
    with _lock:
        prover = _provers.get(key)
    if prover is not None:
        return prover
    if abi == "roller":
        prover = RollerProver(key[2], params_dir, chain_id, fork_params)
    elif abi == "seed":
        prover = SeedProver(key[2], params_dir, seed_path)
    else:
        raise ProverError(f"unknown prover ABI {abi!r} (expected 'roller' or 'seed')")
    with _lock:
        return _provers.setdefault(key, prover)
