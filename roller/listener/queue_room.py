"""Several identities on one GPU queue (`identities_per_gpu`), the listener's side: whether a
slot may take one more task without its GPU queue holding more than can be proved within
the session window (the worker's side, fetching traces ahead, is roller.worker.trace_prefetch).

Failure model: the check reads the ledger; a ledger that cannot be read says no room (asking
then could pile up assignments), and with no proof time known yet on the queue it allows one
task behind the current ones, so the first proofs give the estimate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from roller.config import RollerConfig, SlotConfig
from roller.ledger import TaskLedger, TaskState
from roller.logs import kv

# The listener's check: its lines carry the listener's logger name.
log = logging.getLogger("roller.listener")

# Records that still need GPU time: the ones a queue holds or proves.
NEEDS_GPU = frozenset({TaskState.RECEIVED, TaskState.QUEUED, TaskState.PROVING})
# Final records read per slot for the proof time estimate.
RECENT_PROOFS = 5


def _proof_seconds(ledger: TaskLedger, slots: Sequence[SlotConfig]) -> float | None:
    """The longest of the queue's recent proof times, None while none is known."""
    seen = [float(fields["prove_seconds"]) for s in slots
            for _, fields in ledger.recent(s.name, ("prove_seconds",), RECENT_PROOFS)
            if "prove_seconds" in fields]
    return max(seen) if seen else None


def room_on_queue(cfg: RollerConfig, slot: SlotConfig, ledger: TaskLedger) -> bool:
    """Whether `slot` may take a task: the tasks its GPU queue already holds for the other
    identities, plus this one, must be provable within the session window (a task proved
    after it is dropped). One identity per queue: always."""
    siblings = [s for s in cfg.slots if s.queue == slot.queue and s.name != slot.name]
    if not siblings:
        return True
    try:
        ahead = sum(row.state in NEEDS_GPU for s in siblings for row in ledger.live_rows(s.name))
        if ahead == 0:
            return True
        seconds = _proof_seconds(ledger, [slot, *siblings])
    except redis.RedisError:
        return False
    if seconds is None:
        return ahead < 2
    fits = (ahead + 1) * seconds <= cfg.window_seconds
    if not fits:
        log.info("queue full for the session window, not asking for a task %s",
                 kv(slot=slot.name, queue=slot.queue, ahead=ahead, proof_s=round(seconds, 1)))
    return fits
