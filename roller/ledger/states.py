"""The task's states and records: what the ledger holds about a task, and which state may
follow which.

State table (`TaskState`); each state is entered by one transition only
(roller.ledger.transitions):

| state     | entered by      | from                              | meaning                     |
|-----------|-----------------|-----------------------------------|-----------------------------|
| received  | `assign`        | (none), any final state           | recorded, job not yet sent  |
|           | `requeue`       | queued, proving (dead: no lease)  |                             |
| queued    | `mark_queued`   | received                          | job sent to the slot queue  |
| proving   | `start_attempt` | received, queued, proving         | a worker holds the lease    |
| proved    | `store_proof`   | proving, by the lease's attempt   | answer in the outbox        |
|           | `assign`        | delivered, its valid proof kept   | re-assigned: resubmit it    |
|           | `answer_now`    | received                          | failure answered, no job    |
| delivered | `finish`        | proved                            | proof accepted              |
| failed    | `finish`        | proved                            | failure report accepted     |
| refused   | `finish`        | proved                            | refused for good            |
| expired   | `expire`        | received, queued, proving, proved | session window passed       |

(`requeue` and the re-assignment branch of `assign` are the only edges back; `assign`
also carries a record still in flight into a new assignment without changing its state. A
delivered proof is kept for one session window after delivery, then dropped by the sweep:
a re-assignment after that takes the `received` edge and proves again.)

Records: `TaskRecord` is a whole record (task body, proof, facts); `LiveRow` the small fields
of one in flight, for the passes over every live record (reconciliation, status); `Assigned`,
`Moved` and `Attempt` what a transition answers; `Pruned` what a retention pass did. A final
record is slim: what it keeps, and how long, is the memory rule of roller.ledger.records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from roller.protocol.messages import ProofDetail, TaskMsg


class TaskState(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROVING = "proving"
    PROVED = "proved"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"
    EXPIRED = "expired"


FINAL_STATES = frozenset({TaskState.DELIVERED, TaskState.FAILED, TaskState.REFUSED,
                          TaskState.EXPIRED})
IN_FLIGHT_STATES = frozenset(set(TaskState) - FINAL_STATES)
# Allowed from-states of each transition (the table above); the scripts enforce them.
FROM_STATES: dict[str, frozenset[TaskState]] = {
    "mark_queued": frozenset({TaskState.RECEIVED}),
    "requeue": frozenset({TaskState.QUEUED, TaskState.PROVING}),
    "start_attempt": frozenset({TaskState.RECEIVED, TaskState.QUEUED, TaskState.PROVING}),
    "store_proof": frozenset({TaskState.PROVING}),
    "answer_now": frozenset({TaskState.RECEIVED}),
    "finish": frozenset({TaskState.PROVED}),
    "expire": frozenset({TaskState.RECEIVED, TaskState.QUEUED, TaskState.PROVING,
                         TaskState.PROVED}),
}


class AssignResult(StrEnum):
    """What a coordinator notification means for the ledger (see `TaskLedger.assign`)."""

    NEW = "new"  # first time: send the job
    REPROVE = "reprove"  # a new assignment of a finished id: send the job again
    RESUBMIT = "resubmit"  # a new assignment; the kept valid proof is due in the outbox now
    CARRIED = "carried"  # a new assignment of a record still in flight: it answers this one
    UNSENT = "unsent"  # the same assignment, its job never sent: send it
    IN_FLIGHT = "in_flight"  # the same assignment, in flight: a duplicate notification


@dataclass(frozen=True)
class Assigned:
    result: AssignResult
    state: TaskState
    assignment: int


@dataclass(frozen=True)
class Moved:
    """The outcome of a compare-and-set transition: `ok`, or the state that refused it."""

    ok: bool
    state: TaskState | None  # the record's state after the call (None: no record)


@dataclass(frozen=True)
class Attempt:
    """`start_attempt`: counted (with this assignment's and the task id's totals) or not."""

    started: bool
    attempts: int
    total_attempts: int
    state: TaskState | None


@dataclass(frozen=True)
class Pruned:
    """What one retention pass did to a slot (`prune`)."""

    forgotten: int  # final records dropped from the index past the retention
    proofs_dropped: int  # delivered proofs dropped a session window after delivery


@dataclass(frozen=True)
class LiveRow:
    """The small fields of an in-flight record (reconciliation, status): no task body."""

    slot: str
    task_id: str
    state: TaskState
    updated_at: float
    received_at: float
    leased: bool
    due: bool  # in the outbox
    drive: int  # the drive number of its current job message (0: none sent by this release)


@dataclass(frozen=True)
class TaskRecord:
    slot: str
    task: TaskMsg
    received_at: float
    state: TaskState
    assignment: int
    attempts: int
    total_attempts: int
    proof: ProofDetail | None
    outcome: str
    prove_seconds: float | None
    worker: str
    queue: str
    updated_at: float
    drive: int = 0
    owner: str = ""

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.received_at

