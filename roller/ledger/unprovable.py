"""Answers without a job: tasks this identity will not prove again (issue 22 item 6).

`unprovable:{slot}:{id}` (string, TTL `UNPROVABLE_TTL_SECONDS`): the failure report of a task
that failed deterministically for this slot's identity (roller.lifecycle.failures), set by
the job that stored it. An HTTP coordinator hands a failed task straight back (spec
coordinator-http-protocol 4.1), to the same key too: the listener then answers the new
assignment with the same report through `answer_now`, with no job and no trace fetch. The TTL
bounds how long a verdict outlives a fix (a new prover release, a coordinator that re-encodes
its sub-proofs): a day, after which the task may be tried once more. `answer_now` also
answers, at once, a task this roller already started `retry.max_task_attempts` times (the
listener's budget check).

Failure model: every call is one Redis command or one script, so a Redis error leaves the
record as it was; `answer_now` refuses a record that left `received` meanwhile (its job was
sent: that job answers the task).
"""

from __future__ import annotations

import time

from roller.ledger.keyspace import PREFIX, WAKE_KEY, LedgerBase, LuaScript
from roller.ledger.states import Moved, TaskState
from roller.protocol.messages import ProofDetail

UNPROVABLE_TTL_SECONDS = 24 * 3600

# KEYS: task, outbox, wake list. ARGV: answer json, now, id, wake member. RECEIVED -> PROVED
# with a failure answer and no attempt: only a record whose job was not sent yet.
_ANSWER_NOW = """
local state = redis.call('hget', KEYS[1], 'state')
if state ~= 'received' then return {0, state or ''} end
redis.call('hset', KEYS[1], 'state', 'proved', 'proof', ARGV[1], 'proof_ok', '0',
           'updated_at', ARGV[2])
redis.call('hdel', KEYS[1], 'prove_seconds')
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
redis.call('rpush', KEYS[3], ARGV[4])
return {1, 'proved'}
"""


class Unprovable(LedgerBase):
    """Remember what this identity cannot prove, and answer it without a job."""

    _answer_now = LuaScript(_ANSWER_NOW)

    @staticmethod
    def _unprovable_key(slot: str, task_id: str) -> str:
        return f"{PREFIX}unprovable:{slot}:{task_id}"

    def remember_unprovable(self, slot: str, task_id: str, report: str,
                            ttl: float = UNPROVABLE_TTL_SECONDS) -> None:
        """`slot`'s identity cannot prove `task_id`: `report` (its failure report's text)
        answers the task's next assignments for `ttl` seconds."""
        self.r.set(self._unprovable_key(slot, task_id), report, ex=max(int(ttl), 1))

    def unprovable(self, slot: str, task_id: str) -> str | None:
        """The remembered failure report of a task `slot` cannot prove, or None."""
        report = self.r.get(self._unprovable_key(slot, task_id))
        return None if report is None else str(report)

    def task_attempts(self, slot: str, task_id: str) -> int:
        """Started attempts of `task_id` across its assignments (0: no record; a record of a
        release before the cap counted `attempts` only)."""
        total, attempts = self.r.hmget(self._key(slot, task_id), "total_attempts", "attempts")
        return int(total or attempts or 0)

    def answer_now(self, slot: str, detail: ProofDetail) -> Moved:
        """RECEIVED -> PROVED with `detail` (a failure answer) and no job: the answer enters
        the outbox, due now, and the listener is woken to deliver it. Refused (ok False) if
        the record is not in `received` (its job was sent meanwhile, or it is gone)."""
        if detail.status == 0:
            raise ValueError(f"answer_now: task {detail.id} of slot {slot}: only a failure "
                             "answer is made without a job")
        now = time.time()
        ok, state = self._answer_now(
            keys=[self._key(slot, detail.id), self._index("outbox", slot), WAKE_KEY],
            args=[detail.dumps(), now, detail.id, f"{slot}|{detail.id}"])
        return Moved(bool(ok), TaskState(state) if state else None)
