"""Instant fake prover for orchestration unit tests (never for real tasks).

Proofs are self-consistent hashes: verify_* accepts exactly what gen_* of the same kind (chunk,
batch, bundle: the kind is sealed in) produced, and the AggProof shape follows the coordinator's
sanity rules (non-empty proof, final_pair and vk, lengths multiple of 32). A mock instance is a
hash of the input laid out as the native instance is (a chunk's 216 bytes, a batch's or bundle's
152 + 32), so its block count and final pair can be re-derived from it after an HTTP
coordinator's struct round trip (roller.protocol.http_proofs) exactly as a native proof's. It is
not chunk info: of the task's chunk (or batch) infos verify_* checks only the block count (the
one field a mock proof carries honestly), like the devnet's stand-in verifier. As natively, a
batch takes chunk proofs only and a bundle batch proofs only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from roller.errors import ProverError
from roller.forks import PRE_FORK


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CHUNK, BATCH, BUNDLE = 0, 1, 2
_KIND_NAMES = {CHUNK: "chunk", BATCH: "batch", BUNDLE: "bundle"}


def _seal(kind: int, instance: bytes) -> bytes:
    return hashlib.sha256(b"mock-proof" + bytes([kind]) + instance).digest()


def mock_vk(kind: int, fork: str) -> bytes:
    """Each fork's mock circuits have their own verifying key, as the native ones do."""
    return hashlib.sha256(b"mock-vk" + bytes([kind]) + fork.encode()).digest()


class MockProver:
    """A roller.ffi.Prover: `delay` seconds per proof; `fail_with` makes every proof fail."""

    def __init__(self, delay: float = 0.0, fail_with: str | None = None) -> None:
        self.delay = delay
        self.fail_with = fail_with
        self.calls: list[str] = []
        self.forks: list[str] = []  # the fork of each proof, in call order

    def warm_up(self, prove_type: int, fork: str = PRE_FORK) -> None:
        """Nothing to initialise."""

    def _proof(self, kind: int, digest: bytes, block_count: int, fork: str) -> str:
        # Imported here: roller.ffi must not load the protocol package at import time.
        from roller.protocol.http_proofs import derive

        if kind == CHUNK:
            instance = (digest * 7)[:208] + block_count.to_bytes(8, "big")
        else:
            instance = (digest * 5)[:144] + block_count.to_bytes(8, "big") + digest
        final_pair, _ = derive(kind + 1, instance)  # HTTP numbering: 1 chunk, 2 batch, 3 bundle
        if self.delay:
            time.sleep(self.delay)
        if self.fail_with is not None:
            raise ProverError(self.fail_with)
        return json.dumps(
            {
                "proof": _b64(_seal(kind, instance)),
                "instance": _b64(instance),
                "final_pair": _b64(final_pair),
                "vk": _b64(mock_vk(kind, fork)),
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

    def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
        self.calls.append("chunk")
        self.forks.append(fork)
        traces = self._array(traces_json, "traces")
        return self._proof(CHUNK, hashlib.sha256(traces_json.encode()).digest(), len(traces),
                           fork)

    def _aggregate(self, kind: int, sub_proofs_json: str, fork: str) -> str:
        """A batch over chunk proofs or a bundle over batch proofs: every sub-proof checked."""
        sub_kind = kind - 1
        what = _KIND_NAMES[sub_kind]
        self.calls.append(_KIND_NAMES[kind])
        self.forks.append(fork)
        proofs = self._array(sub_proofs_json, f"{what} proofs")
        blocks = 0
        for i, p in enumerate(proofs):
            text = p if isinstance(p, str) else json.dumps(p)
            if not self._verify(sub_kind, text, None, fork):
                raise ProverError(f"{what} proof {i} invalid (not a {fork} proof)")
            blocks += int(json.loads(text).get("block_count", 0))
        return self._proof(kind, hashlib.sha256(sub_proofs_json.encode()).digest(), blocks,
                           fork)

    def gen_batch_proof(self, chunk_proofs_json: str, fork: str = PRE_FORK) -> str:
        return self._aggregate(BATCH, chunk_proofs_json, fork)

    def gen_bundle_proof(self, batch_proofs_json: str, fork: str = PRE_FORK) -> str:
        return self._aggregate(BUNDLE, batch_proofs_json, fork)

    @staticmethod
    def _sealed(kind: int, proof_json: str, fork: str) -> dict[str, Any] | None:
        try:
            p = json.loads(proof_json)
            if (base64.b64decode(p["proof"]) == _seal(kind, base64.b64decode(p["instance"]))
                    and base64.b64decode(p["vk"]) == mock_vk(kind, fork)):
                return dict(p)
        except (ValueError, KeyError, TypeError):
            pass
        return None

    @staticmethod
    def _task_blocks(task_json: str | None, many: bool) -> int | None:
        """Block count the task determines (chunk info, or the ordered chunk/batch infos)."""
        if task_json is None:
            return None
        try:
            task = json.loads(task_json)
            infos = task if many else [task]
            return sum(int(i["block_count"]) for i in infos)
        except (ValueError, KeyError, TypeError):
            return -1  # an unreadable task matches no proof

    def _verify(self, kind: int, proof_json: str, task_json: str | None, fork: str) -> bool:
        p = self._sealed(kind, proof_json, fork)
        blocks = self._task_blocks(task_json, many=kind != CHUNK)
        return p is not None and (blocks is None or p.get("block_count") == blocks)

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str | None = None,
                           fork: str = PRE_FORK) -> bool:
        return self._verify(CHUNK, proof_json, chunk_info_json, fork)

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str | None = None,
                           fork: str = PRE_FORK) -> bool:
        return self._verify(BATCH, proof_json, chunk_infos_json, fork)

    def verify_bundle_proof(self, proof_json: str, batch_infos_json: str | None = None,
                            fork: str = PRE_FORK) -> bool:
        return self._verify(BUNDLE, proof_json, batch_infos_json, fork)

    def vk(self, prove_type: int, fork: str) -> str:
        """The base64 verifying key of `fork`'s mock circuit for `prove_type`."""
        return _b64(mock_vk(prove_type, fork))
