"""The HTTP coordinator generations H1..H4 and the numbered values of their messages (spec
coordinator-http-protocol): the Go enums of the coordinator's `message` package.

Below the messages (roller.protocol.http_messages) and each generation's proof shapes
(roller.protocol.http_proofs), which both name them. Pure values.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Generation(StrEnum):
    H1 = "http-h1"
    H2 = "http-h2"
    H3 = "http-h3"
    H4 = "http-h4"

    @property
    def rank(self) -> int:
        return int(self.value[-1])


class TaskType(IntEnum):
    """`message.ProofType`: the HTTP numbering (the WS era used 0 basic / 1 aggregator)."""

    UNDEFINED = 0
    CHUNK = 1
    BATCH = 2
    BUNDLE = 3  # H3+


class ProverType(IntEnum):
    """Login `prover_types` (H3+): a batch prover also proves bundles; 3 = OpenVM (H4)."""

    CHUNK = 1
    BATCH = 2
    OPENVM = 3


class ProviderType(IntEnum):
    UNDEFINED = 0
    INTERNAL = 1
    EXTERNAL = 2


class ProofStatus(IntEnum):
    OK = 0
    ERROR = 1


class FailureType(IntEnum):
    UNDEFINED = 0
    PANIC = 1
    NO_PANIC = 2
