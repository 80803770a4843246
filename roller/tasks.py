"""Celery tasks run by `celery -A roller worker -Q gpuK`, and the worker's process setup.

A job message carries only (slot, task id): the task itself, and later its proof, live in
the Redis ledger, so messages stay small and Flower shows what an operator knows.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import signals
from eth_account.signers.local import LocalAccount

from roller.celery_app import app
from roller.config import RollerConfig, load_config
from roller.coordinator_client import CoordinatorClient
from roller.ffi import Prover, load_prover
from roller.job import JobContext, run_job
from roller.keys import load_or_create_keystore
from roller.ledger import TaskLedger
from roller.logs import kv
from roller.submitter import Submitter
from roller.trace_client import TraceClient

log = logging.getLogger(__name__)


@functools.cache
def _config() -> RollerConfig:
    return load_config()


@functools.cache
def _prover() -> Prover:
    """One warm prover per worker process, created on first use (never in the parent)."""
    cfg = _config()
    return load_prover(
        str(cfg.prover.library_path) if cfg.prover.library_path else None,
        str(cfg.prover.params_path),
        abi=cfg.prover.abi,
        seed_path=str(cfg.prover.seed_path) if cfg.prover.seed_path else None,
    )


@functools.cache
def _account(slot: str) -> LocalAccount:
    cfg = _config()
    return load_or_create_keystore(cfg.slot(slot).keystore_path, cfg.keystore_password)


_context_lock = threading.Lock()
_contexts: list[JobContext] = []


def _context() -> JobContext:
    """The process's one JobContext; the warm-up thread and the first job may race for it."""
    with _context_lock:
        if not _contexts:
            _contexts.append(_build_context())
        return _contexts[0]


def _build_context() -> JobContext:
    cfg = _config()
    ledger = TaskLedger.from_url(cfg.broker_url)
    log.info("worker process ready %s", kv(pid=os.getpid(),
                                             cuda=os.environ.get("CUDA_VISIBLE_DEVICES", "")))

    def connect(slot: str) -> CoordinatorClient:
        client = CoordinatorClient(cfg.coordinator_url, slot=slot)
        client.connect()
        return client

    return JobContext(
        cfg=cfg,
        ledger=ledger,
        prover=_prover(),
        traces=TraceClient(cfg.trace_endpoint, retries=cfg.retry.trace_retries),
        account_for=_account,
        connect=connect,
        submitter=Submitter(ledger, cfg.retry, cfg.session_window_minutes * 60),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def _warm_up() -> None:
    """Load the prover library and decrypt this worker's slot keys before the first job."""
    queues = set(os.environ.get("ROLLER_WORKER_QUEUES", "").split(","))
    try:
        _context()
        for slot in _config().slots:
            if slot.queue in queues:
                _account(slot.name)
    except Exception as exc:  # the first job retries this and reports the error with its task
        log.warning("warm-up failed %s", kv(error=exc))


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
    """Prove one coordinator task for `slot` and deliver the proof.

    `kind` (chunk/batch) and `size` (blocks or chunk proofs) only label the job for Flower.
    """
    queue = (self.request.delivery_info or {}).get("routing_key") or ""
    log.info("job received %s", kv(task_id=task_id, slot=slot, queue=queue))
    return run_job(_context(), slot, task_id, queue).value
