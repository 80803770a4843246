"""The durable record of every task, in Redis: dedupe, attempts, leases and the proof outbox.

Keys (all prefixed `roller:`):
- `task:{slot}:{id}`   hash: the TaskMsg JSON, timestamps, state, attempts, outcome, proof.
- `tasks:{slot}`       sorted set of task ids by receive time (status view, recovery).
- `lock:{slot}:{id}`   a renewed lease held while a job proves the task.
- `outbox`             sorted set `{slot}|{id}` -> next submit time: proofs not yet delivered.
- `submitting:{slot}:{id}`  held while one process submits, so a proof is never sent twice at once.
- `session:{slot}`     the slot's coordinator session state, for `roller status`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from roller.protocol.messages import ProofDetail, TaskMsg

PREFIX = "roller:"
_REOPEN = """
if redis.call('hget', KEYS[1], 'state') ~= ARGV[1] then return 0 end
local kept = redis.call('hexists', KEYS[1], 'proof') == 1
local state = ARGV[4]
if kept then state = ARGV[3] end
redis.call('hset', KEYS[1], 'received_at', ARGV[2], 'updated_at', ARGV[2], 'state', state,
           'outcome', '')
if kept then
  redis.call('zadd', KEYS[2], ARGV[2], ARGV[5])
  return 2
end
return 1
"""
# Compare-and-set: replace a dead owner's lock only if it still holds it.
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""
_MARK_QUEUED = """
if redis.call('hget', KEYS[1], 'state') == ARGV[1] then
  redis.call('hset', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
end
"""
FIRST_SUBMIT_GRACE_SECONDS = 30.0
JOB_NAMESPACE = uuid.UUID("5f0c4d2e-8a51-4c1f-9a43-31d6f1c0b7aa")


class TaskState(StrEnum):
    RECEIVED = "received"  # recorded, job not yet sent
    QUEUED = "queued"  # job sent to the slot's queue
    PROVING = "proving"
    PROVED = "proved"  # in the outbox, not yet accepted by the coordinator
    DELIVERED = "delivered"  # coordinator answered the submission with success
    REFUSED = "refused"  # coordinator refused the submission for good
    EXPIRED = "expired"  # session window passed before delivery


FINAL_STATES = {TaskState.DELIVERED, TaskState.REFUSED, TaskState.EXPIRED}


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


def job_id(slot: str, task_id: str) -> str:
    """The Celery job id of a task: deterministic, so a task maps to one job everywhere."""
    return str(uuid.uuid5(JOB_NAMESPACE, f"{slot}:{task_id}"))


@dataclass(frozen=True)
class TaskRecord:
    slot: str
    task: TaskMsg
    received_at: float
    state: TaskState
    attempts: int
    proof: ProofDetail | None
    outcome: str
    prove_seconds: float | None
    worker: str
    queue: str

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.received_at


class TaskLedger:
    def __init__(self, client: redis.Redis) -> None:
        # decode_responses=True: every value is str; redis-py's stubs cannot express that.
        self.r: Any = client

    @classmethod
    def from_url(cls, url: str) -> TaskLedger:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    @staticmethod
    def _key(slot: str, task_id: str) -> str:
        return f"{PREFIX}task:{slot}:{task_id}"

    def record_new(self, slot: str, task: TaskMsg, now: float | None = None) -> bool:
        """Record a task before anything acts on it; False if this slot has seen it already."""
        key = self._key(slot, task.id)
        now = now or time.time()
        if not self.r.hsetnx(key, "task", task.dumps()):
            return False
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"received_at": now, "state": TaskState.RECEIVED, "attempts": 0})
        pipe.zadd(f"{PREFIX}tasks:{slot}", {task.id: now})
        pipe.execute()
        return True

    def get(self, slot: str, task_id: str) -> TaskRecord | None:
        raw = self.r.hgetall(self._key(slot, task_id))
        if not raw or "task" not in raw:
            return None
        return TaskRecord(
            slot=slot,
            task=TaskMsg.from_json(json.loads(raw["task"])),
            received_at=float(raw.get("received_at", 0)),
            state=TaskState(raw.get("state", TaskState.RECEIVED)),
            attempts=int(raw.get("attempts", 0)),
            proof=ProofDetail.from_json(json.loads(raw["proof"])) if raw.get("proof") else None,
            outcome=raw.get("outcome", ""),
            prove_seconds=float(raw["prove_seconds"]) if raw.get("prove_seconds") else None,
            worker=raw.get("worker", ""),
            queue=raw.get("queue", ""),
        )

    def mark_queued(self, slot: str, task_id: str) -> None:
        """RECEIVED -> QUEUED, and only from RECEIVED: by the time the listener notes that it
        sent the job, a worker may already be proving (or have delivered) the task."""
        self.r.eval(_MARK_QUEUED, 1, self._key(slot, task_id), TaskState.RECEIVED,
                    TaskState.QUEUED, time.time())

    def note(self, slot: str, task_id: str, **fields: str | float) -> None:
        """Record timing facts about a task (for `roller status` and the benchmarks)."""
        self.r.hset(self._key(slot, task_id), mapping=fields)

    def start_attempt(self, slot: str, task_id: str, worker: str, queue: str) -> int:
        """Count a started proving attempt (before proving, so a crash still counts)."""
        key = self._key(slot, task_id)
        pipe = self.r.pipeline()
        pipe.hincrby(key, "attempts", 1)
        pipe.hset(key, mapping={"state": TaskState.PROVING, "worker": worker, "queue": queue,
                                "updated_at": time.time()})
        attempts, _ = pipe.execute()
        return int(attempts)

    def task_ids(self, slot: str) -> list[str]:
        return list(self.r.zrange(f"{PREFIX}tasks:{slot}", 0, -1))

    def in_state(self, slot: str, states: set[TaskState]) -> list[TaskRecord]:
        records = (self.get(slot, task_id) for task_id in self.task_ids(slot))
        return [rec for rec in records if rec is not None and rec.state in states]

    # Leases: one live proving job per task, even if Celery delivers the job twice.
    def acquire_lease(self, slot: str, task_id: str, owner: str, ttl: int) -> bool:
        return self._acquire(f"{PREFIX}lock:{slot}:{task_id}", owner, ttl)

    def _acquire(self, key: str, owner: str, ttl: int) -> bool:
        """SET NX, or take over a stale lock: one of a dead process of this host (a job
        redelivered after its worker process was killed need not wait out the TTL), or one of
        this very process that a Redis outage kept it from releasing (every key is contended
        by processes, never by two threads of one process)."""
        if self.r.set(key, owner, nx=True, ex=ttl):
            return True
        held_by = self.r.get(key)
        if held_by is None or not (owner_gone(str(held_by)) or _mine(str(held_by))):
            return False
        return bool(self.r.eval(_TAKE_OVER, 1, key, held_by, owner, ttl))

    def renew_lease(self, slot: str, task_id: str, owner: str, ttl: int) -> bool:
        key = f"{PREFIX}lock:{slot}:{task_id}"
        if self.r.get(key) != owner:
            return False
        return bool(self.r.expire(key, ttl))

    def release_lease(self, slot: str, task_id: str, owner: str) -> None:
        key = f"{PREFIX}lock:{slot}:{task_id}"
        if self.r.get(key) == owner:
            self.r.delete(key)

    # The outbox: a proof is stored here before any attempt to submit it.
    def store_proof(self, slot: str, detail: ProofDetail, prove_seconds: float | None) -> None:
        fields: dict[str, str | float] = {"proof": detail.dumps()}
        if prove_seconds is not None:
            fields["prove_seconds"] = prove_seconds
        pipe = self.r.pipeline()
        pipe.hset(self._key(slot, detail.id),
                  mapping={"state": TaskState.PROVED, "updated_at": time.time(), **fields})
        # Due only after a grace period: the worker submits right away itself, and the
        # listener's drainer takes over only if that first attempt fails or never happens.
        pipe.zadd(f"{PREFIX}outbox",
                  {f"{slot}|{detail.id}": time.time() + FIRST_SUBMIT_GRACE_SECONDS})
        pipe.execute()

    def outbox_due(self, now: float | None = None) -> list[tuple[str, str]]:
        members = self.r.zrangebyscore(f"{PREFIX}outbox", "-inf", now or time.time())
        return [(slot, task_id) for slot, task_id in (m.split("|", 1) for m in members)]

    def outbox_size(self) -> int:
        return int(self.r.zcard(f"{PREFIX}outbox"))

    def postpone(self, slot: str, task_id: str, delay: float) -> None:
        self.r.zadd(f"{PREFIX}outbox", {f"{slot}|{task_id}": time.time() + delay}, xx=True)

    def submit_attempt(self, slot: str, task_id: str) -> int:
        return int(self.r.hincrby(self._key(slot, task_id), "submit_attempts", 1))

    def reopen_expired(self, slot: str, task_id: str, now: float | None = None) -> int:
        """An EXPIRED task starts a new window: 1 = to prove again, 2 = its proof is back in
        the outbox, 0 = the task was not expired (nothing changed)."""
        return int(self.r.eval(_REOPEN, 2, self._key(slot, task_id), f"{PREFIX}outbox",
                               TaskState.EXPIRED, now or time.time(), TaskState.PROVED,
                               TaskState.RECEIVED, f"{slot}|{task_id}"))

    def finish(self, slot: str, task_id: str, state: TaskState, outcome: str) -> None:
        """Close a task for good: out of the outbox, with its outcome recorded."""
        pipe = self.r.pipeline()
        pipe.zrem(f"{PREFIX}outbox", f"{slot}|{task_id}")
        pipe.hset(self._key(slot, task_id), mapping={
            "state": state, "outcome": outcome, "finished_at": time.time(),
            "updated_at": time.time()})
        pipe.execute()

    def set_session(self, slot: str, state: str) -> None:
        key = f"{PREFIX}session:{slot}"
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={"state": state, "since": time.time()})
        if state == "registered":
            pipe.hincrby(key, "registrations", 1)
        pipe.execute()

    def session(self, slot: str) -> dict[str, str]:
        return dict(self.r.hgetall(f"{PREFIX}session:{slot}"))

    def acquire_submit(self, slot: str, task_id: str, ttl: int) -> bool:
        return self._acquire(f"{PREFIX}submitting:{slot}:{task_id}", process_owner(), ttl)

    def release_submit(self, slot: str, task_id: str) -> None:
        key = f"{PREFIX}submitting:{slot}:{task_id}"
        if self.r.get(key) == process_owner():
            self.r.delete(key)
