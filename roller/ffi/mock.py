"""Instant fake prover for orchestration unit tests (never for real tasks).

Proofs are self-consistent hashes: verify_* accepts exactly what gen_* produced for the same
input, and the AggProof shape follows the coordinator's sanity rules (non-empty fields, lengths
multiple of 32). A mock instance is a hash of the input, not chunk info: of the task's chunk info
verify_* checks only the block count (the one field a mock proof carries honestly), like the
devnet's stand-in verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from roller.errors import ProverError


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _seal(instance: bytes) -> bytes:
    return hashlib.sha256(b"mock-proof" + instance).digest()


class MockProver:
    """A roller.ffi.Prover: `delay` seconds per proof; `fail_with` makes every proof fail."""

    def __init__(self, delay: float = 0.0, fail_with: str | None = None) -> None:
        self.delay = delay
        self.fail_with = fail_with
        self.calls: list[str] = []

    def warm_up(self, prove_type: int) -> None:
        """Nothing to initialise."""

    def _proof(self, instance: bytes, block_count: int) -> str:
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with is not None:
            raise ProverError(self.fail_with)
        return json.dumps(
            {
                "proof": _b64(_seal(instance)),
                "instance": _b64(instance),
                "final_pair": _b64(hashlib.sha256(b"mock-pair" + instance).digest()),
                "vk": _b64(bytes(32)),
                "block_count": block_count,
            }
        )

    @staticmethod
    def _array(text: str, what: str) -> list[Any]:
        try:
            items = json.loads(text)
        except ValueError as e:
            raise ProverError(f"{what}: invalid JSON: {e}") from e
        if not isinstance(items, list) or not items:
            raise ProverError(f"{what}: expected a non-empty JSON array")
        return items

    def gen_chunk_proof(self, traces_json: str) -> str:
        self.calls.append("chunk")
        traces = self._array(traces_json, "traces")
        return self._proof(hashlib.sha256(traces_json.encode()).digest(), len(traces))

    def gen_batch_proof(self, chunk_proofs_json: str) -> str:
        self.calls.append("batch")
        proofs = self._array(chunk_proofs_json, "chunk proofs")
        blocks = 0
        for i, p in enumerate(proofs):
            text = p if isinstance(p, str) else json.dumps(p)
            if not self.verify_chunk_proof(text):
                raise ProverError(f"chunk proof {i} invalid")
            blocks += int(json.loads(text).get("block_count", 0))
        return self._proof(hashlib.sha256(chunk_proofs_json.encode()).digest(), blocks)

    @staticmethod
    def _sealed(proof_json: str) -> dict[str, Any] | None:
        try:
            p = json.loads(proof_json)
            if base64.b64decode(p["proof"]) == _seal(base64.b64decode(p["instance"])):
                return dict(p)
        except (ValueError, KeyError, TypeError):
            pass
        return None

    @staticmethod
    def _task_blocks(task_json: str | None, batch: bool) -> int | None:
        """Block count the task determines (chunk info, or the batch's ordered chunk infos)."""
        if task_json is None:
            return None
        try:
            task = json.loads(task_json)
            infos = task if batch else [task]
            return sum(int(i["block_count"]) for i in infos)
        except (ValueError, KeyError, TypeError):
            return -1  # an unreadable task matches no proof

    def _verify(self, proof_json: str, task_json: str | None, batch: bool) -> bool:
        p = self._sealed(proof_json)
        blocks = self._task_blocks(task_json, batch)
        return p is not None and (blocks is None or p.get("block_count") == blocks)

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str | None = None) -> bool:
        return self._verify(proof_json, chunk_info_json, batch=False)

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str | None = None) -> bool:
        return self._verify(proof_json, chunk_infos_json, batch=True)
