"""The Celery task run by `celery -A roller worker -Q gpuK`, and its per-process context.

A job message carries only (slot, task id): the task itself, and later its proof, live in
the Redis ledger, so messages stay small and Flower shows what an operator knows. A worker
ends at "proof stored": it holds no keys and never speaks to the coordinator.

Failure model. Faults of the worker, not of the task, must never burn a task's attempts or
reach the coordinator as a task failure: the worker's start checks (roller.worker.boot)
refuse to start a worker without a usable prover; a pool process whose prover still fails
to load puts the job back on its queue (unacknowledged, uncounted) and stops the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any, NoReturn

import redis
from celery import signals
from celery.exceptions import Reject

from roller.celery_app import app
from roller.config import process_config
from roller.errors import RollerError, WorkerUnusable
from roller.ledger import TaskLedger
from roller.lifecycle import Observers
from roller.logs import kv
from roller.observe import metrics
from roller.worker import gpu_guard
from roller.worker import prover as worker_prover
from roller.worker.job import JobContext, run_job
from roller.worker.trace_client import TraceClient
from roller.worker.trace_prefetch import TracePrefetcher

log = logging.getLogger(__name__)


_context_lock = threading.Lock()
_contexts: list[JobContext] = []


def _context() -> JobContext:
    """The process's one JobContext; the warm-up thread and the first job may race for it."""
    with _context_lock:
        if not _contexts:
            _contexts.append(_build_context())
        return _contexts[0]


def _build_context() -> JobContext:
    """Cheap: config, ledger, trace clients and the loaded (not yet warm) prover. The
    warm-up runs as the context's `ready`, under the first job's lease."""
    cfg = process_config()
    prover = worker_prover.process_prover()
    queues = worker_prover.worker_queues()
    ledger = TaskLedger.from_url(cfg.broker_url, cfg.retention_seconds)
    # No retry cap: transient L2 failures are retried for the whole trace budget (bounded
    # by each task's session window, roller.worker.job) before a failure report.
    traces = TraceClient(cfg.trace_endpoint, budget_seconds=cfg.retry.trace_budget_seconds,
                         chain_id=cfg.prover.chain_id)
    return JobContext(
        cfg=cfg,
        ledger=ledger,
        prover=prover,
        traces=traces,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        # One retry: a prefetch is a hint, and the job fetches its own traces if it failed.
        prefetch=TracePrefetcher(ledger, TraceClient(cfg.trace_endpoint, retries=1,
                                                     chain_id=cfg.prover.chain_id),
                                 [s for s in cfg.slots if s.queue in queues]),
        ready=worker_prover.warm,
        events=Observers([metrics.record]),
        # Proofs that keep failing their own check fence this worker's GPU (job.py).
        fence=gpu_guard.self_check_fencer(ledger, sorted(q for q in queues if q)),
    )


def _warm_up() -> None:
    """Load and initialise the prover before the first job (the parent checked it works)."""
    try:
        ctx = _context()
        worker_prover.warm()
        worker_prover.publish_vks(ctx.ledger)
    except (RollerError, OSError, redis.RedisError) as exc:
        log.warning("warm-up failed, the first job retries it %s", kv(error=exc))


@signals.worker_process_init.connect
def _start_warm_up(**_: Any) -> None:
    # In a thread: this signal's handlers must return within worker_proc_alive_timeout.
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()


@app.task(
    name="roller.prove",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=5,
)
def prove(self: Any, slot: str, task_id: str, kind: str = "", size: int = 0,
          drive: int = 0) -> str:
    """Prove one coordinator task for `slot` and store the answer for the listener.

    `kind` (chunk/batch/bundle and the coordinator generation) and `size` (blocks or
    sub-proofs) only label the job for Flower; `drive` is the record's drive number when the
    listener sent this message (roller.ledger), which tells a stale message from the current.
    """
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    log.info("job received %s", kv(task_id=task_id, slot=slot, queue=queue, drive=drive))
    try:
        ctx = _context()
    except (RollerError, OSError) as exc:
        _worker_fault(slot, task_id, exc)
    try:
        return run_job(ctx, slot, task_id, queue, drive).value
    except WorkerUnusable as exc:
        _worker_fault(slot, task_id, exc)


def _worker_fault(slot: str, task_id: str, exc: Exception) -> NoReturn:
    """A worker fault: the job goes back to its queue uncounted (its lease, if taken, is
    released), and this worker stops so that its process manager shows the fault and a
    healthy worker takes the queue."""
    log.critical("prover unusable, job returned to the queue, worker stopping %s",
                 kv(task_id=task_id, slot=slot, error=exc))
    os.kill(os.getppid(), signal.SIGTERM)
    raise Reject(str(exc), requeue=True) from exc
