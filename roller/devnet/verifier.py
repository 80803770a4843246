"""Proof verifiers the devnet coordinator can use (spec 5.6, 7).

`native` re-encodes the AggProof as Go JSON and asks the native prover library
(`roller.ffi`) to verify it as a chunk or batch proof. `stand-in` is a clearly fake
verifier for tests and machines without the library: it applies the coordinator's mock
rule (the proof bytes `this is a invalid proof` are invalid) plus the downstream shape rule
(proof and final_pair non-empty, lengths multiples of 32).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Protocol

from roller.errors import ConfigError, RollerError
from roller.protocol.messages import AggProof

log = logging.getLogger(__name__)

MOCK_INVALID_PROOF = b"this is a invalid proof"
VERIFIER_CHOICES = ("auto", "native", "stand-in")


class Verifier(Protocol):
    name: str

    def verify(self, task_type: int, proof: AggProof) -> bool: ...


class StandInVerifier:
    """Accepts any well-shaped proof; NOT a cryptographic check."""

    name = "stand-in"

    def verify(self, task_type: int, proof: AggProof) -> bool:
        if proof.proof == MOCK_INVALID_PROOF:
            return False
        return all(len(b) > 0 and len(b) % 32 == 0 for b in (proof.proof, proof.final_pair))


class NativeVerifier:
    """Verification through the native prover library (chunk for type 0, batch for type 1)."""

    name = "native"

    def __init__(self, params_dir: Path | None = None) -> None:
        if params_dir is None:
            raise ConfigError("native verifier unavailable: no params directory (--params-dir)")
        try:
            load_prover = importlib.import_module("roller.ffi").load_prover
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"native verifier unavailable: {exc}") from exc
        try:
            # The library path comes from ROLLER_PROVER_LIB or the default build location.
            self._prover: Any = load_prover(None, str(params_dir))
        except (RollerError, OSError) as exc:
            raise ConfigError(f"native verifier unavailable: {exc}") from exc

    def verify(self, task_type: int, proof: AggProof) -> bool:
        text = proof.dumps()
        try:
            if task_type == 1:
                return bool(self._prover.verify_batch_proof(text))
            return bool(self._prover.verify_chunk_proof(text))
        except RollerError as exc:
            # The Go coordinator treats a verifier error as an invalid proof.
            log.warning("verifier error task_type=%s error=%s", task_type, exc)
            return False


def make_verifier(kind: str = "auto", params_dir: Path | None = None) -> Verifier:
    """`native`, `stand-in`, or `auto` (native when a params dir is given and the library
    loads, else stand-in)."""
    if kind == "stand-in":
        return StandInVerifier()
    if kind == "native":
        return NativeVerifier(params_dir)
    if kind != "auto":
        raise ConfigError(f"unknown verifier {kind!r}; choose one of {VERIFIER_CHOICES}")
    try:
        return NativeVerifier(params_dir)
    except ConfigError as exc:
        log.warning("verifier fallback to=stand-in reason=%s", exc)
        return StandInVerifier()
