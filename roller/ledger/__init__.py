"""The durable record of every task, in Redis: the one owner of the task lifecycle.

Nothing else writes its keys; `roller status`, metrics, benchmarks and tests read them
through `TaskLedger`. Its parts, in the order a task lives: `states` (the state table and the
records), `transitions` (the state machine), `records` (reads, notes, what a final record keeps
and for how long), `leases`,
`outbox`, `sessions` (the slot's session, fenced GPU queues), `unprovable` (answers without a job),
`migrate` (upgrades: the 0.1 layout, slim final records);
`keyspace` names the keys.
"""

from roller.ledger.keyspace import PREFIX, WAKE_KEY
from roller.ledger.leases import owner_gone, process_owner
from roller.ledger.states import (
    FINAL_STATES,
    FROM_STATES,
    IN_FLIGHT_STATES,
    Assigned,
    AssignResult,
    Attempt,
    LiveRow,
    Moved,
    Pruned,
    TaskRecord,
    TaskState,
)
from roller.ledger.task_ledger import TaskLedger
from roller.ledger.transitions import JOB_NAMESPACE, job_id
from roller.ledger.unprovable import UNPROVABLE_TTL_SECONDS

__all__ = ["FINAL_STATES", "FROM_STATES", "IN_FLIGHT_STATES", "JOB_NAMESPACE", "PREFIX",
           "WAKE_KEY", "AssignResult", "Assigned", "Attempt", "LiveRow", "Moved", "Pruned",
           "TaskLedger", "TaskRecord", "TaskState", "UNPROVABLE_TTL_SECONDS", "job_id",
           "owner_gone", "process_owner"]
