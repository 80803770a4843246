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

import redis

from roller.config import RollerConfig, process_config
from roller.errors import RollerError, WorkerUnusable
from roller.ffi import Prover, load_configured_prover
from roller.ledger.vks import VerifyingKeys
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
    under every held fork (this also builds the circuit caches on a first start, before any
    job waits for them)."""
    prover = process_prover()
    for fork in process_config().prover.fork_names:
        for prove_type in prove_types:
            prover.warm_up(prove_type, fork)


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
            cfg = process_config()
            # Every held fork's circuits: a task of either fork finds its prover warm.
            for fork in cfg.prover.fork_names:
                for prove_type in prove_types(cfg, worker_queues()):
                    prover.warm_up(prove_type, fork)
        except (RollerError, OSError) as exc:
            raise WorkerUnusable(f"prover warm-up failed: {exc}") from exc
        _warmed.append(True)
    log.info("worker process ready %s", kv(pid=os.getpid(), forks=",".join(
        process_config().prover.fork_names), cuda=os.environ.get("CUDA_VISIBLE_DEVICES", "")))


def publish_vks(ledger: VerifyingKeys) -> None:
    """Tell the listener the verifying keys of this worker's warm circuits, every held fork
    (its H3+ login presents them). Best effort: a prover without keys (the seed ABI) or a
    Redis error leaves the login to `coordinator.vks`, logged."""
    prover = process_prover()
    vk = getattr(prover, "vk", None)
    if vk is None:
        return
    cfg = process_config()
    try:
        for fork in cfg.prover.fork_names:
            for prove_type in prove_types(cfg, worker_queues()):
                ledger.publish_vk(fork, prove_type, vk(prove_type, fork))
    except (RollerError, redis.RedisError) as exc:
        log.warning("verifying keys not published %s", kv(error=exc))
