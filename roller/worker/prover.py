"""The prover of a worker process: which task types its queues need, loaded once, warmed once.

Both sides of a worker's start use it: the parent's start check (roller.worker.boot) runs
`preflight` in a throwaway child for the types `prove_types` names, and each pool process
(roller.tasks) loads its one prover lazily, never in the parent, and warms it before its
first job.

Failure model: `process_prover` and `preflight` raise what loading raises (RollerError,
OSError); `warm` turns any failure into WorkerUnusable, a fault of the worker that never
counts against a task, and retries on the next call.
"""

from __future__ import annotations

import functools
import logging
import os
import threading

from roller.config import RollerConfig, process_config
from roller.errors import RollerError, WorkerUnusable
from roller.ffi import Prover, load_configured_prover
from roller.logs import kv
from roller.protocol.messages import SLOT_TASK_TYPES

log = logging.getLogger(__name__)

# The queues this worker consumes, as the parent's start check found them (roller.worker.boot).
QUEUES_ENV = "ROLLER_WORKER_QUEUES"


def prove_types(cfg: RollerConfig, queues: set[str]) -> list[int]:
    """The task types (0 chunk, 1 batch, 2 bundle) the slots whose queue is in `queues` prove:
    what their worker warms up before a job and accepts."""
    # Plain ints: the list is also written into the preflight's `python -c` source.
    return sorted({int(t) for s in cfg.slots if s.queue in queues
                   for t in SLOT_TASK_TYPES.get(s.prove_type, (s.prove_type,))})


def worker_queues() -> set[str]:
    return set(os.environ.get(QUEUES_ENV, "").split(","))


@functools.cache
def process_prover() -> Prover:
    """One warm prover per worker process, created on first use (never in the parent)."""
    return load_configured_prover(process_config().prover)


def preflight(prove_types: list[int]) -> None:
    """In a throwaway process: load the prover library and initialise it for `prove_types`
    (this also builds the circuit cache on a first start, before any job waits for it)."""
    prover = process_prover()
    for prove_type in prove_types:
        prover.warm_up(prove_type)


_warm_lock = threading.Lock()
_warmed: list[bool] = []


def warm() -> None:
    """Initialise the prover for this worker's task types, once per process (the warm-up
    thread and the first job may race for it; the job waits under its task's lease)."""
    with _warm_lock:
        if _warmed:
            return
        try:
            prover = process_prover()
            for prove_type in prove_types(process_config(), worker_queues()):
                prover.warm_up(prove_type)
        except (RollerError, OSError) as exc:
            raise WorkerUnusable(f"prover warm-up failed: {exc}") from exc
        _warmed.append(True)
    log.info("worker process ready %s", kv(pid=os.getpid(),
                                             cuda=os.environ.get("CUDA_VISIBLE_DEVICES", "")))
