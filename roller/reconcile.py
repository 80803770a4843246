"""Reconciliation: the listener's periodic sweep that re-drives tasks nothing is working on.

Failure model. A record can be stranded in flight without anybody noticing: a send that
failed after the record was written, a job that raised (Celery acks it and forgets it), a
message lost with a Redis that died before its AOF was written. The sweep finds every
in-flight record of a slot that has no live lease, no job message waiting in its queue or
held unacknowledged by a worker, and no answer due in the outbox, and sends its job again.
A record is re-driven only after it has looked stranded on two sweeps in a row (a message
moves between kombu's queue list and its unacked hash in two steps), and every re-drive is
bounded by the task's attempt budget, which the job counts.

It also expires in-flight records whose session window has passed with no job on them, and
drops final records past the retention from the slot's index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from roller.broker import waiting_messages
from roller.config import SlotConfig
from roller.ledger import LiveRow, TaskLedger, TaskState, job_id
from roller.logs import kv
from roller.operator import metrics

log = logging.getLogger(__name__)

# A record younger than this is being handled by the dispatcher or a worker right now.
GRACE_SECONDS = 5.0

def stranded(slot: SlotConfig, row: LiveRow, waiting: str, now: float,
             grace: float = GRACE_SECONDS) -> bool:
    """True if nothing works on `row`: no live lease, no answer due, no job message among
    `waiting` (see roller.broker.waiting_messages), and older than `grace`."""
    if row.leased or row.due or now - row.updated_at < grace:
        return False
    if row.state == TaskState.RECEIVED:
        return True
    return (row.state in (TaskState.QUEUED, TaskState.PROVING)
            and job_id(slot.name, row.task_id) not in waiting)


class Reconciler:
    """One per listener; `sweep` runs in each slot's session thread."""

    def __init__(self, ledger: TaskLedger, send: Callable[[SlotConfig, str], None],
                 window_seconds: float) -> None:
        self.ledger = ledger
        self.send = send
        self.window_seconds = window_seconds
        self._suspects: dict[str, set[str]] = {}

    def sweep(self, slot: SlotConfig, now: float | None = None, confirm: bool = True) -> int:
        """Re-drive the slot's stranded records; returns how many jobs were sent.

        `confirm=False` (at start-up, when no send of this listener can be in flight) acts
        on the first sighting, without a grace period."""
        now = now or time.time()
        rows = self.ledger.live_rows(slot.name)
        waiting = waiting_messages(self.ledger.r, slot.queue) if rows else ""
        seen = self._suspects.setdefault(slot.name, set())
        suspects = set()
        sent = 0
        for row in rows:
            if not stranded(slot, row, waiting, now, GRACE_SECONDS if confirm else 0):
                continue
            fields = kv(task_id=row.task_id, slot=slot.name, state=row.state)
            if self._expired(slot, row, now):
                continue
            if row.state != TaskState.RECEIVED and confirm and row.task_id not in seen:
                suspects.add(row.task_id)
                continue
            if row.state != TaskState.RECEIVED and not self.ledger.requeue(
                    slot.name, row.task_id).ok:
                continue  # a worker took it meanwhile
            log.warning("stranded task re-driven %s", fields)
            metrics.REDRIVES.labels(slot.name).inc()
            self.send(slot, row.task_id)
            sent += 1
        self._suspects[slot.name] = suspects
        self.ledger.prune(slot.name, now)
        return sent

    def _expired(self, slot: SlotConfig, row: LiveRow, now: float) -> bool:
        rec = self.ledger.get(slot.name, row.task_id)
        if rec is None or rec.age(now) <= self.window_seconds:
            return False
        if self.ledger.expire(slot.name, row.task_id, "session window passed").ok:
            log.error("task not proved: session window passed %s",
                      kv(task_id=row.task_id, slot=slot.name, age_s=round(rec.age(now))))
            metrics.proof_outcome(rec.task.type, "expired")
        return True
