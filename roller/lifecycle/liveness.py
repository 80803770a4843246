"""Liveness: is anything still working on an in-flight task? Applied by the reconciler to
every live record every sweep and by the dispatcher to a re-notified task.

Liveness rule. An in-flight record is alive while its lease is renewed:

- A job holds the task's lease (`lock:{slot}:{id}`, TTL LEASE_SECONDS) from the moment it
  takes the job message until it has stored the answer, and renews it every
  LEASE_RENEW_SECONDS; its warm-up, its trace fetch and its proof all run under it.
- A queued or proving record without a lease is alive only while its current job message
  waits in its queue's lists (behind other jobs on the GPU, or put back by a worker's warm
  shutdown). A message only in kombu's `unacked` hash proves nothing: kombu keeps the message
  of a worker that was SIGKILLed or lost its host there until the visibility timeout (24 h
  by default), exactly as it keeps the message of a live one.
- Otherwise the record is dead once the reconciler has seen it so for LIVENESS_GRACE_SECONDS
  (two renewal periods: a lease that a Redis restart lost is taken back by its job within
  one), and it is re-driven: back to `received` and sent again as a new job message with the
  next drive number. A stale message that turns up later (kombu's redelivery after the
  visibility timeout, a worker's restore) carries an older drive number; its job finds the
  record re-driven, leased or final and is acknowledged without proving.
- A received record (recorded, its job never sent) is dead once older than SEND_GRACE_SECONDS.

So a worker's death costs at most LEASE_SECONDS (the lease running out) plus
LIVENESS_GRACE_SECONDS plus two reconcile intervals (the sweep that first sees it and the
one that acts) before its task is sent again; `visibility_timeout_seconds` bounds nothing
any more but the time a dead worker's stale message occupies kombu's `unacked` hash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from roller.ledger import LiveRow, TaskState, job_id

# A running job's lease: its TTL and how often the job renews it. Three renewals per TTL, so
# a live job on a host whose every core is busy still renews in time (a renewal is one Redis
# call from a thread that sleeps; the proof runs in native code without the GIL); short, so
# that a dead worker's task moves on within 45 s at the default sweep (README "Guarantees":
# 15 s + 10 s grace + 2 x 5 s sweeps = 35 s).
LEASE_SECONDS = 15
LEASE_RENEW_SECONDS = 5
# How long the reconciler sees a record with no lease and no waiting message before it
# re-drives it: two renewal periods, so a job whose lease a Redis restart lost takes it back
# first.
LIVENESS_GRACE_SECONDS = 2.0 * LEASE_RENEW_SECONDS
# A received record younger than this is being sent by the dispatcher right now.
SEND_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    """What the liveness rule says of one record at one sweep."""

    alive: bool
    why: str  # for the log line: "leased", "waiting", "answer due", "never sent", ...


def judge(row: LiveRow, job_waiting: Callable[[str], bool], now: float,
          send_grace: float = SEND_GRACE_SECONDS) -> Verdict:
    """The liveness rule for one record, without the grace (see `Liveness`): `job_waiting`
    tells whether a job id waits in the record's queue lists (called only when needed)."""
    if row.due or row.state == TaskState.PROVED:
        return Verdict(True, "answer due")
    if row.state == TaskState.RECEIVED:
        if send_grace > 0 and now - row.updated_at < send_grace:
            return Verdict(True, "being sent")
        return Verdict(False, "never sent")
    if row.leased:
        return Verdict(True, "leased")
    if job_waiting(job_id(row.slot, row.task_id, row.drive)):
        return Verdict(True, "waiting")
    return Verdict(False, "no lease, no waiting job")


@dataclass
class Liveness:
    """Applies the liveness rule with its grace: a record is dead once it has looked dead
    for LIVENESS_GRACE_SECONDS of `clock` time (a received one at once). One per listener,
    shared by its slots' threads (each slot touches only its own keys)."""

    grace_seconds: float = LIVENESS_GRACE_SECONDS
    clock: Callable[[], float] = time.time
    _since: dict[tuple[str, str], float] = field(default_factory=dict)

    def dead(self, row: LiveRow, job_waiting: Callable[[str], bool],
             now: float | None = None, startup: bool = False) -> Verdict | None:
        """The verdict if `row` is to be re-driven now, else None (`startup`: a received
        record is sent at once, since no send of this listener can be under way)."""
        now = self.clock() if now is None else now
        verdict = judge(row, job_waiting, now, 0.0 if startup else SEND_GRACE_SECONDS)
        key = (row.slot, row.task_id)
        if verdict.alive:
            self._since.pop(key, None)
            return None
        if row.state == TaskState.RECEIVED:
            self._since.pop(key, None)
            return verdict
        first = self._since.setdefault(key, now)
        return verdict if now - first >= self.grace_seconds else None

    def forget(self, slot: str, keep: set[str]) -> None:
        """Drop the sightings of `slot`'s records that are no longer live."""
        for key in [k for k in self._since if k[0] == slot and k[1] not in keep]:
            del self._since[key]

    def redriven(self, slot: str, task_id: str) -> None:
        self._since.pop((slot, task_id), None)
