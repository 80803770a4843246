"""The verifying keys of the held hard forks' circuits, as the workers built them: what the
listener's login presents (HTTP H3+: `vks`), since the listener never loads a prover.

A worker publishes each (fork, proof type) key after its warm-up; a fork staged on a host is
presented from the first login after its workers came up with it (roller.forks).

Failure model: a report like the session hash; a Redis error reaches the caller, which logs
it and goes on (a login without the keys is what a coordinator with a mock verifier takes).
"""

from __future__ import annotations

from collections.abc import Iterable

from roller.ledger.keyspace import PREFIX, LedgerBase


class VerifyingKeys(LedgerBase):
    """`vk:{fork}:{proof type}` -> the base64 key proofs of that circuit carry."""

    def publish_vk(self, fork: str, prove_type: int, vk: str) -> None:
        self.r.set(f"{PREFIX}vk:{fork}:{prove_type}", vk)

    def vks(self, forks: Iterable[str], prove_types: Iterable[int]) -> tuple[str, ...]:
        """The published keys of these forks' circuits of these types, in that order (forks
        outer); a key not published yet is left out."""
        keys = [f"{PREFIX}vk:{fork}:{t}" for fork in forks for t in prove_types]
        if not keys:
            return ()
        return tuple(str(v) for v in self.r.mget(keys) if v)
