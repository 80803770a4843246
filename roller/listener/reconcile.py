"""Reconciliation: the listener's periodic sweep over every in-flight record of a slot.

Failure model. A record can be left in flight with nothing working on it: a send that
failed after the record was written, a job that raised (Celery acks it and forgets it), a
worker SIGKILLed or a host powered off mid-proof (kombu keeps its message unacknowledged
until the visibility timeout, a day by default), a message lost with a Redis that died
before its AOF was written. Each sweep applies roller.lifecycle's two policies to every
live record of the slot: the session window (a record past it is expired, and the
coordinator told where the generation takes a failure report) and the liveness rule (a
record without a renewed lease and without a waiting job message is re-driven once it has
looked dead for the grace). Every re-drive is bounded by the task's attempt budget, which
the job counts. It also drops final records past the retention from the slot's index,
and delivered proofs a window after delivery (roller.ledger.records, memory rule).

Cost: one pipelined read of the slot's live records per sweep; kombu's queue lists are read
only when a record without a lease needs them, once per sweep, and the `unacked` hash never.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from roller.broker import waiting_job_ids
from roller.config import SlotConfig
from roller.ledger import LiveRow, TaskLedger, TaskRecord, TaskState
from roller.lifecycle import Liveness, Observers, Window
from roller.lifecycle.events import Redriven
from roller.logs import kv

log = logging.getLogger("roller.reconcile")  # the name its lines always had

# Told of a record the window expired before it was answered (the listener sends the
# coordinator a failure report where the generation takes one).
OnExpired = Callable[[SlotConfig, TaskRecord], None]


class Reconciler:
    """One per listener; `sweep` runs in each slot's session thread, `check` on a
    re-notification."""

    def __init__(self, ledger: TaskLedger, send: Callable[[SlotConfig, str], None],
                 window_seconds: float, liveness: Liveness | None = None,
                 events: Observers | None = None) -> None:
        self.ledger = ledger
        self.send = send
        self.events = events or Observers()
        self.window = Window(window_seconds, self.events)
        self.liveness = liveness or Liveness()

    def sweep(self, slot: SlotConfig, now: float | None = None,
              on_expired: OnExpired | None = None, startup: bool = False) -> int:
        """Apply the window and the liveness rule to every live record of `slot`; returns
        how many jobs were sent again. `startup`: no send of this listener can be under way,
        so a received record is sent at once, however young."""
        now = self.liveness.clock() if now is None else now
        rows = self.ledger.live_rows(slot.name)
        waiting = _WaitingJobs(self.ledger, slot.queue)
        sent = 0
        for row in rows:
            if self.window.passed(row.received_at, now):
                self._expire(slot, row, on_expired)
                continue
            sent += self._redrive_if_dead(slot, row, waiting.has, now, startup)
        self.liveness.forget(slot.name, {row.task_id for row in rows})
        self.ledger.prune(slot.name, now, window_seconds=self.window.seconds)
        return sent

    def check(self, slot: SlotConfig, task_id: str) -> int:
        """The liveness rule for one record (a re-notification of a task in flight)."""
        row = next((r for r in self.ledger.live_rows(slot.name) if r.task_id == task_id), None)
        if row is None:
            return 0
        return self._redrive_if_dead(slot, row, _WaitingJobs(self.ledger, slot.queue).has,
                                     self.liveness.clock())

    def _redrive_if_dead(self, slot: SlotConfig, row: LiveRow,
                         job_waiting: Callable[[str], bool], now: float,
                         startup: bool = False) -> int:
        verdict = self.liveness.dead(row, job_waiting, now, startup)
        if verdict is None:
            return 0
        if row.state != TaskState.RECEIVED and not self.ledger.requeue(slot.name,
                                                                        row.task_id).ok:
            return 0  # a worker took it (or it was answered) meanwhile
        log.warning("dead task re-driven %s", kv(task_id=row.task_id, slot=slot.name,
                                                 state=row.state, why=verdict.why))
        self.events.emit(Redriven(slot.name))
        self.liveness.redriven(slot.name, row.task_id)
        self.send(slot, row.task_id)
        return 1

    def _expire(self, slot: SlotConfig, row: LiveRow, on_expired: OnExpired | None) -> None:
        rec = self.ledger.get(slot.name, row.task_id)
        if rec is None or not self.window.expire(self.ledger, slot.name, row.task_id,
                                                 rec.task.type, rec.received_at, "reconcile"):
            return
        if on_expired is not None and rec.state != TaskState.PROVED:
            on_expired(slot, rec)


class _WaitingJobs:
    """The job ids waiting in one queue's lists, read at most once, and only if asked."""

    def __init__(self, ledger: TaskLedger, queue: str) -> None:
        self.ledger = ledger
        self.queue = queue
        self._ids: frozenset[str] | None = None

    def has(self, job: str) -> bool:
        if self._ids is None:
            self._ids = waiting_job_ids(self.ledger.r, self.queue)
        return job in self._ids

