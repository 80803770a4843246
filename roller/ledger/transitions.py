"""The task state machine: every transition of the state table (roller.ledger.states), each
one atomic Redis script that checks the state it moves from.

So two processes (the listener, a worker, a redelivered copy of a job) can never both win a
transition, and a crash between two steps leaves a record in exactly one known state.

Assignments. The coordinator may assign the same task id to the same key again (an
operator's re-queue, a batch rebuilt from the same blocks; an HTTP coordinator's re-dispatch,
under a new uuid: records are keyed by the task, and the recorded task is always the latest
notification, so an answer goes to the current assignment). A notification is a duplicate
only while that same assignment is in flight in the same registration of the slot
(`epoch`); after the record is final, or after the slot registered again, it is a new
assignment with a fresh attempt budget (`attempts`), under a cap for the task id across
assignments (`total_attempts`).

Drives. Every job message sent for a record carries the record's next drive number
(`begin_send`) and a job id made from it, so a stale message (kombu's redelivery of a dead
worker's job, long after the record was re-driven) is told from the current one: the job
compares its drive with the record's and stops (see roller.lifecycle for the liveness rule).

Closing. `finish` and `expire` leave a slim record (roller.ledger.records, memory rule): the
task body cut to what identifies the task, and no answer unless it is a delivered valid proof,
which a re-assignment may resubmit until the sweep drops it, a session window after delivery.

Failure model: a transition refused by the record's state changes nothing and says which
state refused it (`Moved`, `Attempt`); a Redis error reaches the caller, with the record in
the state it had before the call or after it, never between.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from roller.ledger.keyspace import WAKE_KEY, LedgerBase, LuaScript
from roller.ledger.records import slim_task
from roller.ledger.states import (
    FINAL_STATES,
    FROM_STATES,
    Assigned,
    AssignResult,
    Attempt,
    Moved,
    TaskState,
)
from roller.protocol.messages import ProofDetail, TaskMsg

JOB_NAMESPACE = uuid.UUID("5f0c4d2e-8a51-4c1f-9a43-31d6f1c0b7aa")


def job_id(slot: str, task_id: str, drive: int = 0) -> str:
    """The Celery job id of a task's `drive`-th job message: deterministic, so the
    listener finds it among kombu's messages (drive 0: the one id of the releases before
    drives, kept so their messages are still recognised)."""
    name = f"{slot}:{task_id}" if drive == 0 else f"{slot}:{task_id}:{drive}"
    return str(uuid.uuid5(JOB_NAMESPACE, name))


# --- scripts: KEYS and ARGV are documented at each; every one checks its from-state -------

# FINAL_STATES as a Lua set: the scripts and the Python code share one list.
_FINAL_LUA = "local FINAL = {" + ", ".join(f"{s}=true" for s in sorted(FINAL_STATES)) + "}\n"

# KEYS: task, live, done, outbox, kept. ARGV: task json, now, epoch, id.
_ASSIGN = _FINAL_LUA + """
local key, live, done, outbox, kept = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, epoch, id = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local state = redis.call('hget', key, 'state')
if not state then
  redis.call('del', key)
  redis.call('hset', key, 'task', ARGV[1], 'state', 'received', 'assignment', 1,
             'epoch', epoch, 'received_at', now, 'updated_at', now, 'attempts', 0,
             'total_attempts', 0)
  redis.call('zadd', live, now, id)
  return {'new', 'received', 1}
end
if not FINAL[state] then
  -- The latest notification names the current assignment (an HTTP uuid): the answer goes
  -- to it.
  redis.call('hset', key, 'task', ARGV[1])
  if tonumber(redis.call('hget', key, 'epoch') or '0') >= epoch then
    local n = tonumber(redis.call('hget', key, 'assignment') or '1')
    if state == 'received' then return {'unsent', state, n} end
    return {'in_flight', state, n}
  end
  local n = redis.call('hincrby', key, 'assignment', 1)
  redis.call('hset', key, 'epoch', epoch, 'received_at', now, 'updated_at', now,
             'attempts', 0)
  if state == 'proved' then redis.call('zadd', outbox, now, id) end
  return {'carried', state, n}
end
local n = redis.call('hincrby', key, 'assignment', 1)
redis.call('persist', key)
redis.call('zrem', done, id)
-- In flight again: its kept proof (if any) is this assignment's now, not the sweep's to drop.
redis.call('zrem', kept, id)
redis.call('zadd', live, now, id)
redis.call('hdel', key, 'finished_at', 'submit_attempts', 'prove_started_at',
           'proof_dropped_at')
redis.call('hset', key, 'task', ARGV[1], 'epoch', epoch, 'received_at', now,
           'updated_at', now, 'attempts', 0, 'outcome', '')
-- Only a proof the coordinator took is worth sending again: a refused or rejected one is
-- dropped and the task proved again; so is one the sweep dropped a window after delivery
-- (proof_ok goes with it; the proof itself is checked too, so that a record without one
-- is never put in the outbox to answer nothing).
if state == 'delivered' and redis.call('hget', key, 'proof_ok') == '1'
   and redis.call('hexists', key, 'proof') == 1 then
  redis.call('hset', key, 'state', 'proved')
  redis.call('zadd', outbox, now, id)
  return {'resubmit', 'proved', n}
end
-- A new assignment has no attempt yet: a job of the old one, resumed, cannot take it back.
redis.call('hdel', key, 'proof', 'proof_ok', 'prove_seconds', 'owner')
redis.call('hset', key, 'state', 'received')
return {'reprove', 'received', n}
"""

# KEYS: task. ARGV: csv of from-states, to-state, now. Returns {ok, state}.
_MOVE = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == state then
    redis.call('hset', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
    return {1, ARGV[2]}
  end
end
return {0, state}
"""

# KEYS: task, lock. ARGV: csv of from-states, now. Stranded only: no live lease.
_REQUEUE = """
if redis.call('exists', KEYS[2]) == 1 then
  return {0, redis.call('hget', KEYS[1], 'state') or ''}
end
local state = redis.call('hget', KEYS[1], 'state')
if not state then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == state then
    redis.call('hset', KEYS[1], 'state', 'received', 'updated_at', ARGV[2])
    return {1, 'received'}
  end
end
return {0, state}
"""

# KEYS: task, lock. ARGV: csv of from-states, owner, worker, queue, now.
# Returns {started, attempts, total_attempts, state}.
_START_ATTEMPT = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return {0, 0, 0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed or redis.call('get', KEYS[2]) ~= ARGV[2] then
  return {0, tonumber(redis.call('hget', KEYS[1], 'attempts') or '0'),
          tonumber(redis.call('hget', KEYS[1], 'total_attempts') or '0'), state}
end
local n = redis.call('hincrby', KEYS[1], 'attempts', 1)
local total = redis.call('hincrby', KEYS[1], 'total_attempts', 1)
redis.call('hset', KEYS[1], 'state', 'proving', 'worker', ARGV[3], 'queue', ARGV[4],
           'updated_at', ARGV[5], 'owner', ARGV[2])
return {1, n, total, 'proving'}
"""

# KEYS: task, outbox, wake list, lock. ARGV: proof json, ok flag, prove seconds or '', now,
# id, wake member, owner. Only the current attempt (the record's owner) stores, and only while
# it holds the lease or nobody does.
_STORE_PROOF = """
local state = redis.call('hget', KEYS[1], 'state')
if state ~= 'proving' then return {0, state or ''} end
local lock = redis.call('get', KEYS[4])
if redis.call('hget', KEYS[1], 'owner') ~= ARGV[7] or (lock and lock ~= ARGV[7]) then
  return {0, 'proving'}
end
redis.call('hset', KEYS[1], 'state', 'proved', 'proof', ARGV[1], 'proof_ok', ARGV[2],
           'updated_at', ARGV[4])
if ARGV[3] ~= '' then redis.call('hset', KEYS[1], 'prove_seconds', ARGV[3]) end
redis.call('zadd', KEYS[2], ARGV[4], ARGV[5])
redis.call('rpush', KEYS[3], ARGV[6])
return {1, 'proved'}
"""

# KEYS: task, live, done, outbox, kept. ARGV: csv of from-states, to-state, outcome, now,
# retention seconds, id, the slim task body ('' : keep the body as it is).
_CLOSE = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {0, state} end
redis.call('hset', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3], 'finished_at', ARGV[4],
           'updated_at', ARGV[4])
if ARGV[7] ~= '' then redis.call('hset', KEYS[1], 'task', ARGV[7]) end
-- Only a valid proof the coordinator took can be asked for again (assign's resubmit): it is
-- kept, indexed by delivery time for the sweep that drops it a window later; any other
-- answer (failure report, refused proof, expired undelivered) leaves Redis now.
if ARGV[2] == 'delivered' and redis.call('hget', KEYS[1], 'proof_ok') == '1' then
  redis.call('zadd', KEYS[5], ARGV[4], ARGV[6])
else
  redis.call('hdel', KEYS[1], 'proof', 'proof_ok')
end
redis.call('zrem', KEYS[2], ARGV[6])
redis.call('zadd', KEYS[3], ARGV[4], ARGV[6])
redis.call('zrem', KEYS[4], ARGV[6])
redis.call('expire', KEYS[1], ARGV[5])
return {1, ARGV[2]}
"""

# KEYS: task. The next drive number of an existing record (0: no record).
_DRIVE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('hincrby', KEYS[1], 'drive', 1)
"""


def _csv(states: Iterable[TaskState]) -> str:
    return ",".join(sorted(states))


def _state(value: str) -> TaskState | None:
    return TaskState(value) if value else None


class Transitions(LedgerBase):
    """The transitions of the state table, one method each."""

    _assign = LuaScript(_ASSIGN)
    _move = LuaScript(_MOVE)
    _requeue = LuaScript(_REQUEUE)
    _start = LuaScript(_START_ATTEMPT)
    _store = LuaScript(_STORE_PROOF)
    _close = LuaScript(_CLOSE)
    _drive = LuaScript(_DRIVE)

    def assign(self, slot: str, task: TaskMsg, epoch: int, now: float | None = None
               ) -> Assigned:
        """Record a coordinator notification before anything acts on it (see the module's
        assignment rule); `epoch` is the slot's registration it arrived in."""
        now = now or time.time()
        result, state, assignment = self._assign(
            keys=self._closing_keys(slot, task.id), args=[task.dumps(), now, epoch, task.id])
        return Assigned(AssignResult(result), TaskState(state), int(assignment))

    def _cas(self, op: str, slot: str, task_id: str, to: TaskState) -> Moved:
        ok, state = self._move(keys=[self._key(slot, task_id)],
                               args=[_csv(FROM_STATES[op]), to, time.time()])
        return Moved(bool(ok), _state(state))

    def mark_queued(self, slot: str, task_id: str) -> Moved:
        """RECEIVED -> QUEUED, and only from RECEIVED: by the time the listener notes that it
        sent the job, a worker may already be proving (or have stored) the task."""
        return self._cas("mark_queued", slot, task_id, TaskState.QUEUED)

    def requeue(self, slot: str, task_id: str) -> Moved:
        """QUEUED/PROVING -> RECEIVED for a stranded record (no live lease), to send again."""
        ok, state = self._requeue(keys=[self._key(slot, task_id), self._lock(slot, task_id)],
                                  args=[_csv(FROM_STATES["requeue"]), time.time()])
        return Moved(bool(ok), _state(state))

    def start_attempt(self, slot: str, task_id: str, owner: str, worker: str, queue: str
                      ) -> Attempt:
        """Count a started proving attempt (before proving, so a crash still counts); only
        by the holder of the task's lease."""
        ok, attempts, total, state = self._start(
            keys=[self._key(slot, task_id), self._lock(slot, task_id)],
            args=[_csv(FROM_STATES["start_attempt"]), owner, worker, queue, time.time()])
        return Attempt(bool(ok), int(attempts), int(total), _state(state))

    def store_proof(self, slot: str, detail: ProofDetail, prove_seconds: float | None, *,
                    owner: str) -> Moved:
        """PROVING -> PROVED, by the attempt `owner` only (see the module): the answer (a
        proof or a failure report) enters the outbox, due now, and the listener is woken to
        deliver it."""
        now = time.time()
        ok, state = self._store(
            keys=[self._key(slot, detail.id), self._index("outbox", slot), WAKE_KEY,
                  self._lock(slot, detail.id)],
            args=[detail.dumps(), "1" if detail.status == 0 else "0",
                  "" if prove_seconds is None else prove_seconds, now, detail.id,
                  f"{slot}|{detail.id}", owner])
        return Moved(bool(ok), _state(state))

    def begin_send(self, slot: str, task_id: str) -> int:
        """The drive number of the job message about to be sent (0: no such record)."""
        return int(self._drive(keys=[self._key(slot, task_id)]))

    def finish(self, slot: str, task_id: str, state: TaskState, outcome: str) -> Moved:
        """PROVED -> DELIVERED, FAILED or REFUSED: the coordinator's answer to a submission."""
        if state not in (TaskState.DELIVERED, TaskState.FAILED, TaskState.REFUSED):
            raise ValueError(f"finish: {state} is not a submission outcome")
        return self._finish("finish", slot, task_id, state, outcome)

    def expire(self, slot: str, task_id: str, outcome: str) -> Moved:
        """Any in-flight state -> EXPIRED: the session window passed before delivery."""
        return self._finish("expire", slot, task_id, TaskState.EXPIRED, outcome)

    def _finish(self, op: str, slot: str, task_id: str, state: TaskState, outcome: str
                ) -> Moved:
        # The slim body is cut here, off Redis' one thread (a batch body is megabytes of
        # sub-proofs); it is the same from any notification of the task id (`slim_task`),
        # so a re-notification between this read and the close changes nothing.
        raw = self.r.hget(self._key(slot, task_id), "task")
        ok, now_state = self._close(
            keys=self._closing_keys(slot, task_id),
            args=[_csv(FROM_STATES[op]), state, outcome, time.time(),
                  max(self.retention_seconds, 1), task_id, slim_task(raw) if raw else ""])
        return Moved(bool(ok), _state(now_state))
