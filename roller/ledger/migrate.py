"""Upgrades of the ledger's layout: the first release's (roller 0.1) records indexed as this
one's, and final records written before records were slim (issue 31) made slim.

Failure model: idempotent, so a listener that stops half way runs it again at its next start;
each record is slimmed by a compare-and-set script that leaves alone a record re-assigned
(or closed again) since it was read.
"""

from __future__ import annotations

from collections.abc import Iterable

from roller.ledger.keyspace import PREFIX, LedgerBase, LuaScript
from roller.ledger.records import slim_task
from roller.ledger.states import FINAL_STATES, IN_FLIGHT_STATES

# KEYS: task, kept. ARGV: id, finished_at as read ('' : none), slim task body ('' : keep).
# What `_CLOSE` (roller.ledger.transitions) does at the close, for a record closed before it
# did: a delivered valid proof is indexed for the sweep (which drops it a window after its
# delivery: at once for an old one), any other answer is dropped.
_SLIM_CLOSED = ("local FINAL = {" + ", ".join(f"{s}=true" for s in sorted(FINAL_STATES))
                + "}\n" + """
local state = redis.call('hget', KEYS[1], 'state')
if not state or not FINAL[state] then return 0 end
if (redis.call('hget', KEYS[1], 'finished_at') or '') ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('hset', KEYS[1], 'task', ARGV[3]) end
if state == 'delivered' and redis.call('hget', KEYS[1], 'proof_ok') == '1'
   and redis.call('hexists', KEYS[1], 'proof') == 1 then
  redis.call('zadd', KEYS[2], tonumber(ARGV[2]) or 0, ARGV[1])
else
  redis.call('hdel', KEYS[1], 'proof', 'proof_ok')
end
return 1
""")

# Final records read per round trip: a batch record's body can be megabytes.
_SLIM_GROUP = 8


class Migration(LedgerBase):
    """The 0.1 layout (`tasks:{slot}`, one `outbox`) moved into the live and done indexes;
    final records of releases before slim records slimmed, once per slot."""

    _slim_closed = LuaScript(_SLIM_CLOSED)

    def migrate(self, slots: Iterable[str]) -> int:
        """Index records written by roller 0.1 (`tasks:{slot}`, one `outbox`), then slim the
        final records of earlier releases; idempotent. Returns the 0.1 records indexed."""
        moved = 0
        slots = list(slots)
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
        for slot in slots:
            self.slim_closed(slot)
        return moved

    def slim_closed(self, slot: str) -> int:
        """Make slim every final record of `slot` closed by a release before slim records
        (their proofs and task bodies would otherwise stay for the whole retention); once per
        slot (`slim:{slot}` marks it done). Returns the records slimmed."""
        marker = f"{PREFIX}slim:{slot}"
        if self.r.exists(marker):
            return 0
        ids = list(self.r.zrange(self._index("done", slot), 0, -1))
        kept = self._index("kept", slot)
        slimmed = 0
        for start in range(0, len(ids), _SLIM_GROUP):
            group = ids[start:start + _SLIM_GROUP]
            pipe = self.r.pipeline(transaction=False)
            for task_id in group:
                pipe.hmget(self._key(slot, task_id), "finished_at", "task")
            read = pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            for task_id, (finished_at, raw) in zip(group, read, strict=True):
                self._slim_closed(keys=[self._key(slot, task_id), kept],
                                  args=[task_id, finished_at or "",
                                        slim_task(raw) if raw else ""], client=pipe)
            slimmed += sum(int(n) for n in pipe.execute())
        self.r.set(marker, "1")
        return slimmed
