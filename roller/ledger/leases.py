"""Leases: one live proving job per task, even if Celery delivers the job twice.

Attempts and leases. A job proves only under the task's lease, and `start_attempt` writes
the lease's owner into the record; `store_proof` takes the answer only from that attempt,
while it holds the lease or nobody does. A job whose lease ran out (a Redis outage longer
than the TTL, a frozen process) takes it back with `retake_lease` if no other attempt has
started since (a job the listener re-drove meanwhile, still waiting in its queue, has not);
otherwise another attempt owns the task and the job stores nothing.

An owner is `host:pid[:...]` (`process_owner`): a lease of a process of this host that has
exited (`owner_gone`) is taken over at once instead of waiting out its TTL.
"""

from __future__ import annotations

import os
import socket
import time

from roller.ledger.keyspace import LedgerBase, LuaScript

# KEYS: lock. ARGV: owner. Release only one's own lease.
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('del', KEYS[1])
"""

# KEYS: lock, task. ARGV: owner, ttl, now. Renew one's own lease, or take it back when
# nobody holds it and the record's attempt is still one's own: `proving`, or re-driven by the
# listener (`received`, `queued`) with the new job still waiting in the queue. That job holds
# no lease and has started no attempt (start_attempt writes its owner), so the resumed job
# keeps its work: the record goes back to `proving`, and the waiting job, finding the lease
# held and then the task answered, is acknowledged without proving.
_RETAKE = """
local lock = redis.call('get', KEYS[1])
if lock == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end
if lock then return 0 end
if redis.call('hget', KEYS[2], 'owner') ~= ARGV[1] then return 0 end
local state = redis.call('hget', KEYS[2], 'state')
if state ~= 'proving' and state ~= 'received' and state ~= 'queued' then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
if state ~= 'proving' then
  redis.call('hset', KEYS[2], 'state', 'proving', 'updated_at', ARGV[3])
end
return 2
"""

# KEYS: lock. ARGV: the stale owner seen, the new owner, ttl.
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
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



class Leases(LedgerBase):
    """Acquire, renew or take back, and release the lease of a task being proved."""

    _release = LuaScript(_RELEASE)
    _take_over = LuaScript(_TAKE_OVER)
    _retake = LuaScript(_RETAKE)

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
        """Renew `owner`'s lease (1), or take it back (2) if it ran out while no other
        attempt started (a re-driven job still waiting in its queue is none: the record goes
        back to `proving`); 0: another attempt owns the task (or the record was answered),
        and `owner` must store nothing."""
        return int(self._retake(keys=[self._lock(slot, task_id), self._key(slot, task_id)],
                                args=[owner, max(ttl, 1), time.time()]))

    def release_lease(self, slot: str, task_id: str, owner: str) -> bool:
        return bool(self._release(keys=[self._lock(slot, task_id)], args=[owner]))

    def leased(self, slot: str, task_id: str) -> bool:
        return bool(self.r.exists(self._lock(slot, task_id)))

