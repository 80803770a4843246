"""The session window: may the task still be answered? Applied by the reconciler every sweep,
by the job before it proves and by the submitter before it submits.

Window rule. The coordinator collects a task's answer only within its session window
(`session_window_minutes`, counted from the assignment): a record older than that is
expired, wherever it is (queued, proving, waiting in the outbox), with one WARNING, an
`Expired` event (the `expired` outcome metric), and, from the reconciler, a failure report
where the generation takes one (so the coordinator hears of it from us, not from its own
timer).

Failure model: `expire` is the ledger's compare-and-set; a record another process moved on
meanwhile is left alone (False) and nothing is logged or counted twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from roller.config import proof_kind
from roller.ledger import TaskLedger
from roller.lifecycle.events import Expired, Observers
from roller.logs import kv

log = logging.getLogger("roller.lifecycle")

WINDOW_PASSED = "session window passed"


@dataclass(frozen=True)
class Window:
    """The session window: one check, one way to expire a record."""

    seconds: float
    events: Observers = field(default_factory=Observers, compare=False)

    def passed(self, received_at: float, now: float | None = None) -> bool:
        return ((time.time() if now is None else now) - received_at) > self.seconds

    def expire(self, ledger: TaskLedger, slot: str, task_id: str, prove_type: int,
               received_at: float, where: str) -> bool:
        """Expire the record (any in-flight state); True if this call did. `where` names
        the step that found it (job, reconcile, submit) for the log line."""
        if not ledger.expire(slot, task_id, WINDOW_PASSED).ok:
            return False
        log.warning("task not answered: session window passed %s",
                    kv(task_id=task_id, slot=slot, kind=proof_kind(prove_type),
                       age_s=round(time.time() - received_at), window_s=round(self.seconds),
                       found_by=where))
        self.events.emit(Expired(prove_type))
        return True
