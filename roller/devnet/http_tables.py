"""The devnet HTTP coordinator's settings and tables: what Scroll's coordinator keeps in Postgres
(`prover_task` rows, challenges used, attempts per task) and the proofs as its ORM stored
them. Touched only under the coordinator's serialiser (roller.devnet.http_coordinator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from roller.devnet.traces import TraceIndex
from roller.protocol.http_enums import Generation
from roller.protocol.messages import AggProof


@dataclass
class HttpCoordinatorConfig:
    generation: Generation = Generation.H3
    challenge_ttl: float = 10.0
    login_ttl: float = 3600.0
    collection_time: float = 180.0
    session_attempts: int = 2
    hard_fork_name: str = "darwinV2"  # H3 dispatch answers and the claim
    # The forks of the chain's tasks: the verifier keys an H3+ login may present are theirs.
    forks: tuple[str, ...] = ("darwinV2",)
    # H3: when set, the version prefix (before the first '-') must equal it (v4.4.47+ rule).
    min_prover_version: str | None = None
    bundles: bool = True  # H3: a bundle task per verified batch
    chain_id: int = 534352
    # Seconds a submission waits before its verification (the real verifier takes seconds
    # to minutes per proof); the submit call answers after it, as the coordinator's does.
    verify_delay: float = 0.0
    # The served traces: H3+ Darwin/DarwinV2 batch blobs carry their chunks' L2 transactions
    # (roller.devnet.batch_data); None: blobs of empty chunks.
    traces: TraceIndex | None = None
    # Tests: serve H3+ codec v3/v4 batch tasks with this batch header field altered (one of
    # roller.devnet.batch_data.CORRUPTIBLE); None: the true header.
    corrupt_batch_header_field: str | None = None


@dataclass
class ProverTask:
    """A `prover_task` row: one dispatch of one task to one key."""

    uuid: str
    task_id: str
    pk: str
    prover_name: str
    prover_version: str
    task_type: int  # HTTP numbering
    assigned_at: float
    status: str = "assigned"  # assigned | valid | invalid
    failure_type: int = 0

    def info(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CoordinatorTables:
    """The coordinator's Postgres as the devnet keeps it in memory."""

    used_challenges: set[str] = field(default_factory=set)
    rows: list[ProverTask] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    bundled: set[str] = field(default_factory=set)
    # Verified proofs as stored (the Go struct re-encoded), by the AggProof the book keeps.
    stored: dict[AggProof, Any] = field(default_factory=dict)
    # The batch table's codec v3/v4 columns by batch task id: (header, blob payload), or None
    # for a batch of another codec (roller.devnet.batch_data).
    batches: dict[str, Any] = field(default_factory=dict)
