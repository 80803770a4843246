"""Upgrade from the first release's layout (roller 0.1): its records indexed as this one's.

Failure model: idempotent, so a listener that stops half way runs it again at its next start.
"""

from __future__ import annotations

from collections.abc import Iterable

from roller.ledger.keyspace import PREFIX, LedgerBase
from roller.ledger.states import IN_FLIGHT_STATES


class Migration(LedgerBase):
    """The 0.1 layout (`tasks:{slot}`, one `outbox`) moved into the live and done indexes."""

    def migrate(self, slots: Iterable[str]) -> int:
        """Index records written by roller 0.1 (`tasks:{slot}`, one `outbox`); idempotent."""
        moved = 0
        for slot in slots:
            old = f"{PREFIX}tasks:{slot}"
            for task_id, score in self.r.zrange(old, 0, -1, withscores=True):
                state = self.r.hget(self._key(slot, task_id), "state")
                if state in IN_FLIGHT_STATES:
                    self.r.zadd(self._index("live", slot), {task_id: score})
                elif state:
                    self.r.zadd(self._index("done", slot), {task_id: score})
                    self.r.expire(self._key(slot, task_id), max(self.retention_seconds, 1))
                moved += 1
            self.r.delete(old)
        for member, score in self.r.zrange(f"{PREFIX}outbox", 0, -1, withscores=True):
            slot, _, task_id = member.partition("|")
            self.r.zadd(self._index("outbox", slot), {task_id: score})
        self.r.delete(f"{PREFIX}outbox")
        return moved
