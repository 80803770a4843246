"""The outbox: answers stored before any attempt to submit them, due by time, per slot.

A worker's `store_proof` (roller.ledger.transitions) enters an answer here and pushes its
`{slot}|{id}` on the wake list; the listener delivers what is due and postpones what the
coordinator asked to retry. The wake list only saves the wait for the next tick: the outbox
is the truth, so a lost wake-up delays an answer by one tick and loses nothing.
"""

from __future__ import annotations

import time

from roller.ledger.keyspace import WAKE_KEY, LedgerBase


class Outbox(LedgerBase):
    """The answers waiting for delivery, and the listener's wake-up when one is stored."""

    def outbox_due(self, slot: str, now: float | None = None) -> list[str]:
        return list(self.r.zrangebyscore(self._index("outbox", slot), "-inf",
                                         now or time.time()))

    def outbox_size(self, *slots: str) -> int:
        """Answers waiting in the outboxes of `slots` (at least one: the ledger keeps one
        outbox per slot and no list of slots)."""
        if not slots:
            raise ValueError("outbox_size: name the slot(s)")
        pipe = self.r.pipeline(transaction=False)
        for name in slots:
            pipe.zcard(self._index("outbox", name))
        return sum(int(n) for n in pipe.execute())

    def postpone(self, slot: str, task_id: str, delay: float) -> None:
        self.r.zadd(self._index("outbox", slot), {task_id: time.time() + delay}, xx=True)

    def submit_attempt(self, slot: str, task_id: str) -> int:
        return int(self.r.hincrby(self._key(slot, task_id), "submit_attempts", 1))

    def wait_proved(self, timeout: float) -> tuple[str, str] | None:
        """Block until a worker stores an answer; (slot, task id), or None on timeout."""
        item = self.r.blpop([WAKE_KEY], timeout=max(timeout, 0.01))
        if item is None:
            return None
        slot, _, task_id = item[1].partition("|")
        return slot, task_id

