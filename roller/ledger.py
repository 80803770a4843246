"""The durable record of every task, in Redis: the one owner of the task lifecycle.

Every state change is one atomic Redis script that checks the state it moves from, so two
processes (the listener, a worker, a redelivered copy of a job) can never both win a
transition, and a crash between two steps leaves a record in exactly one known state.
Nothing else writes these keys; `roller status`, metrics, benchmarks and tests read them
through this module.

State table (`TaskState`); each state is entered by one function only:

| state     | entered by      | from                              | meaning                     |
|-----------|-----------------|-----------------------------------|-----------------------------|
| received  | `assign`        | (none), any final state           | recorded, job not yet sent  |
|           | `requeue`       | queued, proving (dead: no lease)  |                             |
| queued    | `mark_queued`   | received                          | job sent to the slot queue  |
| proving   | `start_attempt` | received, queued, proving         | a worker holds the lease    |
| proved    | `store_proof`   | proving, by the lease's attempt   | answer in the outbox        |
|           | `assign`        | delivered, with its valid proof   | re-assigned: resubmit it    |
|           | `answer_now`    | received                          | failure answered, no job    |
| delivered | `finish`        | proved                            | proof accepted              |
| failed    | `finish`        | proved                            | failure report accepted     |
| refused   | `finish`        | proved                            | refused for good            |
| expired   | `expire`        | received, queued, proving, proved | session window passed       |

(`requeue` and the re-assignment branch of `assign` are the only edges back; `assign`
also carries a record still in flight into a new assignment without changing its state.)

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

Attempts and leases. A job proves only under the task's lease, and `start_attempt` writes
the lease's owner into the record; `store_proof` takes the answer only from that attempt,
while it holds the lease or nobody does. A job whose lease ran out (a Redis outage longer
than the TTL, a frozen process) takes it back with `retake_lease` only if the record is
still its attempt; otherwise another attempt owns the task and the job stores nothing.

Keys (all prefixed `roller:`):
- `task:{slot}:{id}`  hash: the TaskMsg JSON, state, assignment, epoch, timestamps,
                      attempts, drive, owner (of the current attempt), outcome, proof.
                      Final records expire after the retention.
- `live:{slot}`       sorted set of non-final task ids by receive time (start-up and
                      reconciliation touch only these).
- `done:{slot}`       sorted set of final task ids by finish time, trimmed to the retention.
- `outbox:{slot}`     sorted set task id -> next submit time: answers not yet delivered.
- `proved`            list of `{slot}|{id}`: wakes the listener the moment a proof is stored.
- `lock:{slot}:{id}`  a renewed lease held while a job proves the task.
- `session:{slot}`    the slot's coordinator session (state, since, epoch, registrations).
- `unprovable:{slot}:{id}` the failure report of a task this identity cannot prove (24 h;
                      see the answers-without-a-job block below).
- `fenced:{queue}`    why the queue's GPU is fenced (set by its worker, cleared by the next
                      worker that starts healthy); its slots ask for no work meanwhile.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from roller.protocol.messages import ProofDetail, TaskMsg

PREFIX = "roller:"
JOB_NAMESPACE = uuid.UUID("5f0c4d2e-8a51-4c1f-9a43-31d6f1c0b7aa")
WAKE_KEY = f"{PREFIX}proved"


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


# --- scripts: KEYS and ARGV are documented at each; every one checks its from-state -------

# FINAL_STATES as a Lua set: the scripts and the Python code share one list.
_FINAL_LUA = "local FINAL = {" + ", ".join(f"{s}=true" for s in sorted(FINAL_STATES)) + "}\n"

# KEYS: task, live, done, outbox. ARGV: task json, now, epoch, id.
_ASSIGN = _FINAL_LUA + """
local key, live, done, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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
redis.call('zadd', live, now, id)
redis.call('hdel', key, 'finished_at', 'submit_attempts', 'prove_started_at')
redis.call('hset', key, 'task', ARGV[1], 'epoch', epoch, 'received_at', now,
           'updated_at', now, 'attempts', 0, 'outcome', '')
-- Only a proof the coordinator took is worth sending again: a refused or rejected one is
-- dropped and the task proved again.
if state == 'delivered' and redis.call('hget', key, 'proof_ok') == '1' then
  redis.call('hset', key, 'state', 'proved')
  redis.call('zadd', outbox, now, id)
  return {'resubmit', 'proved', n}
end
redis.call('hdel', key, 'proof', 'proof_ok', 'prove_seconds')
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

# KEYS: task, live, done, outbox. ARGV: csv of from-states, to-state, outcome, now,
# retention seconds, id.
_CLOSE = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {0, state} end
redis.call('hset', KEYS[1], 'state', ARGV[2], 'outcome', ARGV[3], 'finished_at', ARGV[4],
           'updated_at', ARGV[4])
redis.call('zrem', KEYS[2], ARGV[6])
redis.call('zadd', KEYS[3], ARGV[4], ARGV[6])
redis.call('zrem', KEYS[4], ARGV[6])
redis.call('expire', KEYS[1], ARGV[5])
return {1, ARGV[2]}
"""

# KEYS: lock. ARGV: owner. Release only one's own lease.
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('del', KEYS[1])
"""

# KEYS: lock, task. ARGV: owner, ttl. Renew one's own lease, or take it back when nobody
# holds it and the record is still one's own attempt in `proving`.
_RETAKE = """
local lock = redis.call('get', KEYS[1])
if lock == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end
if lock then return 0 end
if redis.call('hget', KEYS[2], 'state') ~= 'proving'
    or redis.call('hget', KEYS[2], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 2
"""

# KEYS: task. The next drive number of an existing record (0: no record).
_DRIVE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('hincrby', KEYS[1], 'drive', 1)
"""

# KEYS: lock. ARGV: the stale owner seen, the new owner, ttl.
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""

# KEYS: task. ARGV: field, value, ... (timing facts onto an existing record only).
_NOTE = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], unpack(ARGV)) end
"""


def process_owner() -> str:
    """This process as a lock owner: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str) -> bool:
    """True if `owner` (`host:pid[:...]`) is a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # A killed child its parent has not reaped yet is a zombie: gone all the same.
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _mine(owner: str) -> bool:
    return owner.split(":")[:2] == process_owner().split(":")


def job_id(slot: str, task_id: str, drive: int = 0) -> str:
    """The Celery job id of a task's `drive`-th job message: deterministic, so the
    listener finds it among kombu's messages (drive 0: the one id of the releases before
    drives, kept so their messages are still recognised)."""
    name = f"{slot}:{task_id}" if drive == 0 else f"{slot}:{task_id}:{drive}"
    return str(uuid.uuid5(JOB_NAMESPACE, name))


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


def _csv(states: Iterable[TaskState]) -> str:
    return ",".join(sorted(states))


def _state(value: str) -> TaskState | None:
    return TaskState(value) if value else None


# === Answers without a job: tasks this identity will not prove again (issue 22 item 6) =====
# Self-contained (its own keys, script and mixin) so that it can move to a module of its own.
#
# `unprovable:{slot}:{id}` (string, TTL `UNPROVABLE_TTL_SECONDS`): the failure report of a
# task that failed deterministically for this slot's identity (roller.failures), set by the
# job that stored it. An HTTP coordinator hands a failed task straight back (spec
# coordinator-http-protocol 4.1), to the same key too: the listener then answers the new
# assignment with the same report through `answer_now`, with no job and no trace fetch.
# The TTL bounds how long a verdict outlives a fix (a new prover release, a coordinator
# that re-encodes its sub-proofs): a day, after which the task may be tried once more.
# `answer_now` also answers, at once, a task this roller already started
# `retry.max_task_attempts` times (the listener's budget check).

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


class _Unprovable:
    """TaskLedger's answers without a job (the block's comment)."""

    r: Any

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
        total, attempts = self.r.hmget(f"{PREFIX}task:{slot}:{task_id}", "total_attempts",
                                       "attempts")
        return int(total or attempts or 0)

    @functools.cached_property
    def _answer_now_script(self) -> Any:
        return self.r.register_script(_ANSWER_NOW)

    def answer_now(self, slot: str, detail: ProofDetail) -> Moved:
        """RECEIVED -> PROVED with `detail` (a failure answer) and no job: the answer enters
        the outbox, due now, and the listener is woken to deliver it. Refused (ok False) if
        the record is not in `received` (its job was sent meanwhile, or it is gone)."""
        if detail.status == 0:
            raise ValueError(f"answer_now: task {detail.id} of slot {slot}: only a failure "
                             "answer is made without a job")
        now = time.time()
        ok, state = self._answer_now_script(
            keys=[f"{PREFIX}task:{slot}:{detail.id}", f"{PREFIX}outbox:{slot}", WAKE_KEY],
            args=[detail.dumps(), now, detail.id, f"{slot}|{detail.id}"])
        return Moved(bool(ok), _state(state))

# === end of the answers-without-a-job block ================================================


class TaskLedger(_Unprovable):
    def __init__(self, client: redis.Redis, retention_seconds: float = 72 * 3600) -> None:
        # decode_responses=True: every value is str; redis-py's stubs cannot express that.
        self.r: Any = client
        self.retention_seconds = int(retention_seconds)
        self._assign = self.r.register_script(_ASSIGN)
        self._move = self.r.register_script(_MOVE)
        self._requeue = self.r.register_script(_REQUEUE)
        self._start = self.r.register_script(_START_ATTEMPT)
        self._store = self.r.register_script(_STORE_PROOF)
        self._close = self.r.register_script(_CLOSE)
        self._release = self.r.register_script(_RELEASE)
        self._take_over = self.r.register_script(_TAKE_OVER)
        self._retake = self.r.register_script(_RETAKE)
        self._drive = self.r.register_script(_DRIVE)
        self._note = self.r.register_script(_NOTE)

    @classmethod
    def from_url(cls, url: str, retention_seconds: float = 72 * 3600) -> TaskLedger:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30),
                   retention_seconds)

    @staticmethod
    def _key(slot: str, task_id: str) -> str:
        return f"{PREFIX}task:{slot}:{task_id}"

    @staticmethod
    def _lock(slot: str, task_id: str) -> str:
        return f"{PREFIX}lock:{slot}:{task_id}"

    @staticmethod
    def _index(kind: str, slot: str) -> str:
        return f"{PREFIX}{kind}:{slot}"

    def _closing_keys(self, slot: str, task_id: str) -> list[str]:
        return [self._key(slot, task_id), self._index("live", slot), self._index("done", slot),
                self._index("outbox", slot)]

    # -- transitions -------------------------------------------------------------------

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
        ok, now_state = self._close(
            keys=self._closing_keys(slot, task_id),
            args=[_csv(FROM_STATES[op]), state, outcome, time.time(),
                  max(self.retention_seconds, 1), task_id])
        return Moved(bool(ok), _state(now_state))

    # -- reads ----------------------------------------------------------------------------

    def get(self, slot: str, task_id: str) -> TaskRecord | None:
        raw = self.r.hgetall(self._key(slot, task_id))
        if not raw or "task" not in raw or "state" not in raw:
            return None
        return TaskRecord(
            slot=slot,
            task=TaskMsg.from_json(json.loads(raw["task"])),
            received_at=float(raw.get("received_at", 0)),
            state=TaskState(raw["state"]),
            assignment=int(raw.get("assignment", 1)),
            attempts=int(raw.get("attempts", 0)),
            total_attempts=int(raw.get("total_attempts", raw.get("attempts", 0))),
            proof=ProofDetail.from_json(json.loads(raw["proof"])) if raw.get("proof") else None,
            outcome=raw.get("outcome", ""),
            prove_seconds=float(raw["prove_seconds"]) if raw.get("prove_seconds") else None,
            worker=raw.get("worker", ""),
            queue=raw.get("queue", ""),
            updated_at=float(raw.get("updated_at") or raw.get("received_at") or 0),
            drive=int(raw.get("drive") or 0),
            owner=raw.get("owner", ""),
        )

    def live_ids(self, slot: str) -> list[str]:
        return list(self.r.zrange(self._index("live", slot), 0, -1))

    def task_ids(self, slot: str) -> list[str]:
        """Every task id the ledger holds for `slot` (in flight, then final ones kept)."""
        return self.live_ids(slot) + list(self.r.zrange(self._index("done", slot), 0, -1))

    def live_rows(self, slot: str) -> list[LiveRow]:
        """Small fields of every in-flight record, in two round trips."""
        ids = self.live_ids(slot)
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self._key(slot, task_id), "state", "updated_at", "received_at",
                       "drive")
            pipe.exists(self._lock(slot, task_id))
            pipe.zscore(self._index("outbox", slot), task_id)
        out = pipe.execute()
        rows = []
        for i, task_id in enumerate(ids):
            (state, updated, received, drive), leased, due = out[3 * i:3 * i + 3]
            if state:
                rows.append(LiveRow(slot, task_id, TaskState(state), float(updated or 0),
                                    float(received or 0), bool(leased), due is not None,
                                    int(drive or 0)))
        return rows

    def recent(self, slot: str, fields: Sequence[str], count: int
               ) -> list[tuple[str, dict[str, str]]]:
        """The `fields` of the slot's in-flight records and its `count` latest final ones,
        newest first (for `roller status`: never task or proof bodies)."""
        ids = (list(self.r.zrevrange(self._index("live", slot), 0, count - 1))
               + list(self.r.zrevrange(self._index("done", slot), 0, count - 1)))
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self._key(slot, task_id), list(fields))
        return [(task_id, {k: v for k, v in zip(fields, values, strict=True) if v})
                for task_id, values in zip(ids, pipe.execute(), strict=True)]

    def note(self, slot: str, task_id: str, **fields: str | float) -> None:
        """Record timing facts about a task (for `roller status` and the benchmarks); never
        the state, which only the transitions above change."""
        if "state" in fields:
            raise ValueError("note: the state changes only through a transition")
        # Only onto an existing record: a record that expired must not come back as a stub.
        args = [str(v) for pair in fields.items() for v in pair]
        self._note(keys=[self._key(slot, task_id)], args=args)

    # -- retention ------------------------------------------------------------------------

    def prune(self, slot: str, now: float | None = None) -> int:
        """Forget final records past the retention (their hashes expire on their own)."""
        cutoff = (now or time.time()) - self.retention_seconds
        return int(self.r.zremrangebyscore(self._index("done", slot), "-inf", cutoff))

    # -- leases: one live proving job per task, even if Celery delivers the job twice -------

    def acquire_lease(self, slot: str, task_id: str, owner: str, ttl: int) -> bool:
        """SET NX, or take over a stale lease: one of a dead process of this host (a job
        redelivered after its worker process was killed need not wait out the TTL), or one of
        this very process that a Redis outage kept it from releasing (every key is contended
        by processes, never by two threads of one process)."""
        key = self._lock(slot, task_id)
        if self.r.set(key, owner, nx=True, ex=ttl):
            return True
        held_by = self.r.get(key)
        if held_by is None or not (owner_gone(str(held_by)) or _mine(str(held_by))):
            return False
        return bool(self._take_over(keys=[key], args=[held_by, owner, ttl]))

    def retake_lease(self, slot: str, task_id: str, owner: str, ttl: int) -> int:
        """Renew `owner`'s lease (1), or take it back (2) if it ran out while nobody else
        took it and the record is still `owner`'s attempt; 0: another attempt owns the task
        (or the record moved on), and `owner` must store nothing."""
        return int(self._retake(keys=[self._lock(slot, task_id), self._key(slot, task_id)],
                                args=[owner, max(ttl, 1)]))

    def release_lease(self, slot: str, task_id: str, owner: str) -> bool:
        return bool(self._release(keys=[self._lock(slot, task_id)], args=[owner]))

    def leased(self, slot: str, task_id: str) -> bool:
        return bool(self.r.exists(self._lock(slot, task_id)))

    # -- the outbox: answers stored before any attempt to submit them ----------------------

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

    # -- the slot's session ---------------------------------------------------------------

    def next_epoch(self, slot: str) -> int:
        """A new registration of the slot: tasks it notifies are new assignments."""
        return int(self.r.hincrby(f"{PREFIX}session:{slot}", "epoch", 1))

    def set_session(self, slot: str, state: str, *, generation: str | None = None,
                    token_expires: float | None = None) -> None:
        """The slot's session state for `roller status`; a registration also names the
        protocol generation and, for the HTTP ones, when the login token expires."""
        key = f"{PREFIX}session:{slot}"
        pipe = self.r.pipeline()
        fields: dict[str, str | float] = {"state": state, "since": time.time()}
        if generation is not None:
            fields.update(generation=generation, token_expires=token_expires or 0)
        pipe.hset(key, mapping=fields)
        if state == "registered":
            pipe.hincrby(key, "registrations", 1)
        pipe.execute()

    def touch_session(self, slot: str, now: float | None = None,
                      token_expires: float | None = None) -> None:
        """The listener's heartbeat for the slot: a `registered` state whose heartbeat is
        old belongs to a listener that is gone. It carries the login token's expiry, which
        a re-login moves."""
        fields: dict[str, float] = {"seen": now or time.time()}
        if token_expires is not None:
            fields["token_expires"] = token_expires
        self.r.hset(f"{PREFIX}session:{slot}", mapping=fields)

    def session(self, slot: str) -> dict[str, str]:
        return dict(self.r.hgetall(f"{PREFIX}session:{slot}"))

    # -- fenced GPU queues: a worker whose GPU failed tells the listener ------------------

    def fence(self, queue: str, reason: str) -> None:
        """`queue`'s GPU is unusable (its worker stopped consuming): its slots stop asking
        for work until a worker of the queue starts on a healthy GPU (`unfence`)."""
        self.r.set(f"{PREFIX}fenced:{queue}", reason)

    def unfence(self, queues: Iterable[str]) -> None:
        keys = [f"{PREFIX}fenced:{q}" for q in queues]
        if keys:
            self.r.delete(*keys)

    def fenced(self, queue: str) -> str | None:
        """Why `queue`'s GPU is fenced, or None."""
        reason = self.r.get(f"{PREFIX}fenced:{queue}")
        return None if reason is None else str(reason)

    # -- upgrade from the first release's layout -------------------------------------------

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
