"""Several identities on one GPU queue (`identities_per_gpu`), the worker's side: while the
current job proves, `TracePrefetcher` looks every second for the next chunk task waiting on
this worker's queues and fetches its traces, so that job starts proving at once (the
listener's side, the queue's window budget, is roller.listener.queue_room).

Failure model: prefetching is an optimisation only. A failed or stale prefetch leaves
nothing behind and the job fetches its own traces (with its retries and its `get traces
failed` answer); at most one set of traces is held, so memory stays bounded; a Redis error
skips the prefetch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis

from roller.config import SlotConfig
from roller.errors import TraceFetchError
from roller.ledger import TaskLedger, TaskRecord, TaskState
from roller.logs import kv
from roller.protocol.messages import ProveType
from roller.redact import scrub
from roller.worker.trace_client import TraceClient

log = logging.getLogger(__name__)

# How often, while a task proves, the worker looks for a next task to fetch ahead: the
# other identity's task usually arrives during the proof (after its own previous proof is
# verified), not before it starts.
LOOK_AHEAD_SECONDS = 1.0


class TracePrefetcher:
    """Traces of the next queued chunk task of `slots` (the slots of this worker's queues),
    fetched on a background thread while the current task proves; one entry at most."""

    def __init__(self, ledger: TaskLedger, traces: TraceClient, slots: Sequence[SlotConfig]
                 ) -> None:
        self.ledger = ledger
        self.traces = traces
        self.slots = [s for s in slots if s.prove_type == ProveType.BASIC]
        self._lock = threading.Lock()
        self._held: tuple[str, str, tuple[str, ...], str] | None = None  # slot, id, hashes, json
        self._thread: threading.Thread | None = None
        self._proving = threading.Event()

    def take(self, rec: TaskRecord) -> str | None:
        """The prefetched traces of `rec`'s task, if these are they (then forgotten)."""
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return None
        slot, task_id, hashes, traces_json = held
        if (slot, task_id, hashes) != (rec.slot, rec.task.id, tuple(rec.task.block_hashes)):
            return None
        log.info("traces prefetched %s", kv(task_id=task_id, slot=slot))
        return traces_json

    def ahead_of(self, current: TaskRecord) -> None:
        """While `current` proves (until `proved()`), look for the next waiting task every
        LOOK_AHEAD_SECONDS and fetch its traces (one look-ahead thread at a time)."""
        if len(self.slots) < 2:
            return  # one identity: nothing waits behind the current task
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._proving.set()
            self._thread = threading.Thread(target=self._look_ahead, args=(current,),
                                            name="trace-prefetch", daemon=True)
            self._thread.start()

    def proved(self) -> None:
        """The current task's prover call returned: stop looking (a fetch under way ends)."""
        self._proving.clear()

    def _look_ahead(self, current: TaskRecord) -> None:
        # Bounded by the proof: the loop ends when proved() clears the flag.
        while self._proving.is_set():
            if self._fetch_next(current):
                return
            time.sleep(LOOK_AHEAD_SECONDS)

    def _next(self, current: TaskRecord) -> TaskRecord | None:
        waiting: list[TaskRecord] = []
        for slot in self.slots:
            for row in self.ledger.live_rows(slot.name):
                if row.state == TaskState.QUEUED and (slot.name, row.task_id) != (
                        current.slot, current.task.id):
                    rec = self.ledger.get(slot.name, row.task_id)
                    if rec is not None and rec.task.type == ProveType.BASIC:
                        waiting.append(rec)
        # Celery's queue is FIFO: the oldest queued record is the next job.
        return min(waiting, key=lambda r: r.received_at, default=None)

    def _fetch_next(self, current: TaskRecord) -> bool:
        """Fetch the next waiting task's traces; False if none waits yet."""
        try:
            nxt = self._next(current)
            if nxt is None:
                return False
            hashes = tuple(nxt.task.block_hashes)
            traces_json = self.traces.get_traces_json(list(hashes))
        except (redis.RedisError, TraceFetchError) as exc:
            log.warning("trace prefetch skipped %s", kv(task_id=current.task.id,
                                                        slot=current.slot,
                                                        error=scrub(str(exc))))
            return True  # the job fetches its own: no retry loop here
        with self._lock:
            self._held = (nxt.slot, nxt.task.id, hashes, traces_json)
        return True
