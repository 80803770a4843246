"""Celery tasks run by `celery -A roller worker -Q gpuK`, and the worker's process setup.

A job message carries only (slot, task id): the task itself, and later its proof, live in
the Redis ledger, so messages stay small and Flower shows what an operator knows. A worker
ends at "proof stored": it holds no keys and never speaks to the coordinator.

Failure model. Faults of the worker, not of the task, must never burn a task's attempts or
reach the coordinator as a task failure:
- at process start (`celeryd_init`, before any job is consumed) the config must load and
  the prover library must load and initialise, in a throwaway child process so the parent
  never holds a prover; otherwise the worker exits with one line and status 3, so the
  process manager shows it and another worker takes the queue;
- a pool process whose prover still fails to load puts the job back on its queue
  (unacknowledged, uncounted) and stops the worker.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import redis
from celery import signals
from celery.exceptions import Reject

from roller.celery_app import app
from roller.config import RollerConfig, process_config
from roller.errors import RollerError
from roller.ffi import Prover, load_prover
from roller.job import JobContext, run_job
from roller.ledger import TaskLedger
from roller.logs import kv
from roller.trace_client import TraceClient

log = logging.getLogger(__name__)

EXIT_WORKER_FAULT = 3
PREFLIGHT_TIMEOUT_SECONDS = 900


@functools.cache
def _prover() -> Prover:
    """One warm prover per worker process, created on first use (never in the parent)."""
    cfg = process_config()
    return load_prover(
        str(cfg.prover.library_path) if cfg.prover.library_path else None,
        str(cfg.prover.params_path),
        abi=cfg.prover.abi,
        seed_path=str(cfg.prover.seed_path) if cfg.prover.seed_path else None,
    )


_context_lock = threading.Lock()
_contexts: list[JobContext] = []


def _context() -> JobContext:
    """The process's one JobContext; the warm-up thread and the first job may race for it."""
    with _context_lock:
        if not _contexts:
            _contexts.append(_build_context())
        return _contexts[0]


def _build_context() -> JobContext:
    cfg = process_config()
    prover = _prover()
    queues = set(os.environ.get("ROLLER_WORKER_QUEUES", "").split(","))
    for prove_type in _prove_types(cfg, queues):
        prover.warm_up(prove_type)
    log.info("worker process ready %s", kv(pid=os.getpid(),
                                             cuda=os.environ.get("CUDA_VISIBLE_DEVICES", "")))
    return JobContext(
        cfg=cfg,
        ledger=TaskLedger.from_url(cfg.broker_url, cfg.retention_seconds),
        prover=prover,
        traces=TraceClient(cfg.trace_endpoint, retries=cfg.retry.trace_retries),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def _prove_types(cfg: RollerConfig, queues: set[str]) -> list[int]:
    return sorted({s.prove_type for s in cfg.slots if s.queue in queues})


def preflight(prove_types: list[int]) -> None:
    """In a throwaway process: load the prover library and initialise it for `prove_types`
    (this also builds the circuit cache on a first start, before any job waits for it)."""
    prover = _prover()
    for prove_type in prove_types:
        prover.warm_up(prove_type)


@signals.celeryd_init.connect
def _check_worker(options: Any = None, **_: Any) -> None:
    """Refuse to start a worker that could only swallow tasks (see the module docstring)."""
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    try:
        cfg = process_config()
    except RollerError as exc:
        _fatal(f"config: {exc}")
    wanted = set(queues)
    known = {s.queue for s in cfg.slots}
    if wanted and not wanted & known:
        _fatal(f"queues {sorted(wanted)} serve no slot of the config (slots use "
               f"{sorted(known)})")
    types = _prove_types(cfg, wanted or known)
    log.info("checking the prover %s", kv(library=cfg.prover.library_path or "default",
                                          abi=cfg.prover.abi, types=types))
    argv = [sys.executable, "-c",
            "import sys; from roller.tasks import preflight; "
            f"preflight({types!r})"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=PREFLIGHT_TIMEOUT_SECONDS, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        _fatal(f"prover check did not finish within {PREFLIGHT_TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        _fatal(f"prover unusable: {lines[-1] if lines else f'exit {done.returncode}'}")


def _fatal(message: str) -> None:
    log.critical("worker not started %s", kv(error=message))
    print(f"roller worker: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_WORKER_FAULT)


def _warm_up() -> None:
    """Load and initialise the prover before the first job (the parent checked it works)."""
    try:
        _context()
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
def prove(self: Any, slot: str, task_id: str, kind: str = "", size: int = 0) -> str:
    """Prove one coordinator task for `slot` and store the answer for the listener.

    `kind` (chunk/batch) and `size` (blocks or chunk proofs) only label the job for Flower.
    """
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    log.info("job received %s", kv(task_id=task_id, slot=slot, queue=queue))
    try:
        ctx = _context()
    except (RollerError, OSError) as exc:
        # A worker fault: the job goes back to its queue uncounted, and this worker stops so
        # that its process manager shows the fault and a healthy worker takes the queue.
        log.critical("prover unusable, job returned to the queue, worker stopping %s",
                     kv(task_id=task_id, slot=slot, error=exc))
        os.kill(os.getppid(), signal.SIGTERM)
        raise Reject(str(exc), requeue=True) from exc
    return run_job(ctx, slot, task_id, queue).value
