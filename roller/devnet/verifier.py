"""Proof verifiers the devnet coordinator can use (spec 5.6, 7): a proof is valid only as a proof
of the task it answers.

`native` recomputes what the task determines and hands it to the native prover library
(`roller.ffi`) with the proof: for a chunk task, the chunk info of the traces the devnet serves for
its blocks (chain id, roots, data hash, commitment, block count); for a batch task, the ordered
chunk infos of the sub-proofs it served (each verified against its own chunk task before); for a
bundle task (HTTP H3+), the ordered batch infos of the batch proofs it served (likewise verified
before). A valid proof of other blocks is refused with the differing field named. `stand-in`
is a clearly fake verifier for tests and machines without the library: the coordinator's mock
rule (the proof bytes `this is a invalid proof` are invalid), the downstream shape rule (proof
and final_pair non-empty, lengths multiples of 32) and the one task field a mock proof carries
honestly, the block count (a batch's or bundle's: the sum over its sub-proofs); it checks no
cryptography and no other instance field.

Failure model: every refusal is a `Verdict` whose reason names the field or the missing input;
a verifier error (library missing a trace, malformed proof) is an invalid proof, as in Go.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from roller.devnet.tasksource import AGGREGATOR, BUNDLE, TaskRecord
from roller.devnet.traces import TraceIndex
from roller.errors import ConfigError, RollerError
from roller.protocol.messages import AggProof

log = logging.getLogger(__name__)

MOCK_INVALID_PROOF = b"this is a invalid proof"
# The one key Scroll's `mock_verifier` coordinator build accepts at an H3+ login.
MOCK_VK = "mock_vk"
VERIFIER_CHOICES = ("auto", "native", "stand-in")


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one proof against its task; `reason` says why when invalid."""

    valid: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.valid and not self.reason:
            raise ValueError("Verdict.reason: an invalid verdict must say why")


VALID = Verdict(True)


class Verifier(Protocol):
    name: str

    def verify(self, task: TaskRecord, proof: AggProof) -> Verdict: ...

    def vks(self, forks: Sequence[str]) -> frozenset[str]:
        """The verifying keys an H3+ login may present: those of this verifier's circuits
        of `forks` (a coordinator refuses any other as `incompatible vk`)."""
        ...


def _task_block_count(task: TaskRecord) -> int:
    if task.type in (AGGREGATOR, BUNDLE):
        return sum(p.block_count for p in task.sub_proofs)
    return len(task.block_hashes)


class StandInVerifier:
    """Shape rules and the block count; NOT a cryptographic check, no other instance field."""

    name = "stand-in"

    def vks(self, forks: Sequence[str]) -> frozenset[str]:
        """A mock verifier's one key (Scroll's `mock_verifier` build)."""
        return frozenset({MOCK_VK})

    def verify(self, task: TaskRecord, proof: AggProof) -> Verdict:
        if proof.proof == MOCK_INVALID_PROOF:
            return Verdict(False, "mock invalid proof")
        if not all(len(b) > 0 and len(b) % 32 == 0 for b in (proof.proof, proof.final_pair)):
            return Verdict(False, "proof or final_pair empty or not a multiple of 32 bytes")
        expected = _task_block_count(task)
        if (task.block_hashes or task.sub_proofs) and proof.block_count != expected:
            return Verdict(False, f"instance field block_count differs from the task: "
                                  f"proof {proof.block_count}, task {expected}")
        return VALID


class NativeVerifier:
    """Verification through the native prover library against what the task determines."""

    name = "native"

    def __init__(self, params_dir: Path | None = None, traces: TraceIndex | None = None,
                 chain_id: int | None = None) -> None:
        if params_dir is None:
            raise ConfigError("native verifier unavailable: no params directory (--params-dir)")
        try:
            ffi = importlib.import_module("roller.ffi")
            native = importlib.import_module("roller.ffi.native")
            self._info_of_instance = native.chunk_info_of_instance
            self._batch_info_of_instance = native.batch_info_of_instance
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"native verifier unavailable: {exc}") from exc
        try:
            # The library path comes from ROLLER_PROVER_LIB or the default build location.
            self._prover: Any = ffi.load_prover(None, str(params_dir), chain_id=chain_id)
        except (RollerError, OSError) as exc:
            raise ConfigError(f"native verifier unavailable: {exc}") from exc
        self._traces = traces
        self._vks: dict[tuple[str, ...], frozenset[str]] = {}
        self._vks_lock = threading.Lock()

    def vks(self, forks: Sequence[str]) -> frozenset[str]:
        """Every proof type's key of each fork's circuits (roller.ffi: the key proofs carry),
        computed once per set of forks."""
        key = tuple(forks)
        with self._vks_lock:  # the devnet warms them at start; a login may ask meanwhile
            if key not in self._vks:
                self._vks[key] = frozenset(self._prover.vk(t, fork, role="verifier")
                                           for fork in forks for t in (0, 1, 2))
            return self._vks[key]

    def _chunk_info(self, task: TaskRecord) -> str:
        """Chunk info of the traces this devnet serves for the task's blocks."""
        if self._traces is None:
            raise RollerError("no trace index: cannot recompute the task's chunk info")
        raws = []
        for h in task.block_hashes:
            entry = self._traces.by_hash.get(h.lower())
            if entry is None:
                raise RollerError(f"task block {h} is not among the served traces")
            raws.append(entry.raw.decode())
        return json.dumps(self._prover.chunk_info("[" + ",".join(raws) + "]",
                                                  fork=task.fork))

    def _chunk_infos(self, task: TaskRecord) -> str:
        """Ordered chunk infos of the batch task's sub-proofs (verified before they were served)."""
        if not task.sub_proofs:
            raise RollerError("batch task has no sub-proofs")
        return json.dumps([self._info_of_instance(p.instance, p.block_count)
                           for p in task.sub_proofs])

    def _batch_infos(self, task: TaskRecord) -> str:
        """Ordered batch infos of the bundle task's batch proofs (verified before they were
        served)."""
        if not task.sub_proofs:
            raise RollerError("bundle task has no batch proofs")
        return json.dumps([self._batch_info_of_instance(p.instance, p.block_count)
                           for p in task.sub_proofs])

    def verify(self, task: TaskRecord, proof: AggProof) -> Verdict:
        text = proof.dumps()
        try:
            # Under the task's fork: each fork's circuits have their own verifying key.
            if task.type == BUNDLE:
                reason = self._prover.bundle_proof_rejection(text, self._batch_infos(task),
                                                             task.fork)
            elif task.type == AGGREGATOR:
                reason = self._prover.batch_proof_rejection(text, self._chunk_infos(task),
                                                            task.fork)
            else:
                reason = self._prover.chunk_proof_rejection(text, self._chunk_info(task),
                                                            task.fork)
        except RollerError as exc:
            # The Go coordinator treats a verifier error as an invalid proof.
            log.warning("verifier error task_id=%s task_type=%s error=%s", task.id, task.type,
                        exc)
            return Verdict(False, f"verifier error: {exc}")
        return VALID if reason is None else Verdict(False, reason)


def make_verifier(kind: str = "auto", params_dir: Path | None = None,
                  traces: TraceIndex | None = None, chain_id: int | None = None) -> Verifier:
    """`native`, `stand-in`, or `auto` (native when a params dir is given and the library
    loads, else stand-in). `traces`: what the devnet serves, to recompute chunk tasks' infos;
    `chain_id`: for traces that carry no chainID."""
    if kind == "stand-in":
        return StandInVerifier()
    if kind == "native":
        return NativeVerifier(params_dir, traces, chain_id)
    if kind != "auto":
        raise ConfigError(f"unknown verifier {kind!r}; choose one of {VERIFIER_CHOICES}")
    try:
        return NativeVerifier(params_dir, traces, chain_id)
    except ConfigError as exc:
        log.warning("verifier fallback to=stand-in reason=%s", exc)
        return StandInVerifier()
