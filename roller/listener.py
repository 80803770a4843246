"""The listener: one coordinator session per slot, tasks recorded in Redis and sent to Celery.

`python -m roller.listener --config config.json`. It never proves. For each slot it
requests a token, registers and subscribes, and reconnects with capped exponential
backoff plus jitter. A task is recorded in the ledger first (dedupe by slot + task id)
and then sent as one Celery job with a deterministic id to the slot's queue. While a
slot is registered, its session also drains that slot's outbox (proofs whose first
submission failed). SIGTERM: unsubscribe, close, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence

import redis
from celery import Celery
from eth_account.signers.local import LocalAccount

from roller import metrics
from roller.config import RollerConfig, SlotConfig, load_config, proof_kind
from roller.coordinator_client import CoordinatorClient
from roller.errors import ConnectionLost, CoordinatorError, RollerError
from roller.keys import load_or_create_keystore
from roller.ledger import TaskLedger, TaskState, job_id
from roller.logs import kv, setup_logging
from roller.protocol.messages import TaskMsg
from roller.submitter import Submitter

log = logging.getLogger("roller.listener")

VERSION = "v4.0.2-roller-0.1.0"
DRAIN_INTERVAL_SECONDS = 1.0


def reconnect_delay(failures: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter: a restarted coordinator sees no storm."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 30)))


class Dispatcher:
    """Records a task durably, then enqueues its one Celery job on the slot's queue."""

    def __init__(self, app: Celery, ledger: TaskLedger) -> None:
        self.app = app
        self.ledger = ledger

    def accept(self, slot: SlotConfig, task: TaskMsg) -> bool:
        if task.type != slot.prove_type:
            log.error("task of the wrong type ignored %s",
                      kv(task_id=task.id, slot=slot.name, type=task.type, want=slot.prove_type))
            return False
        if not self.ledger.record_new(slot.name, task):
            reopened = self.ledger.reopen_expired(slot.name, task.id)
            if reopened:
                # Our window passed, but the coordinator assigned the task again (a new
                # session): prove it, or resubmit the proof we kept.
                log.warning("task assigned again after its window passed, reopened %s",
                            kv(task_id=task.id, slot=slot.name, proof_kept=reopened == 2))
                if reopened == 1:
                    self.send(slot, task)
                return True
            log.info("duplicate task notification, not enqueued %s",
                     kv(task_id=task.id, slot=slot.name))
            metrics.TASKS_DEDUPLICATED.labels(slot.name).inc()
            return False
        self.send(slot, task)
        return True

    def send(self, slot: SlotConfig, task: TaskMsg) -> None:
        task_id = task.id
        kind = proof_kind(task.type)
        size = len(task.sub_proofs) if task.type else len(task.block_hashes)
        self.app.send_task("roller.prove", args=(slot.name, task_id, kind, size),
                           task_id=job_id(slot.name, task_id), queue=slot.queue,
                           ignore_result=True)
        metrics.JOBS_QUEUED.labels(slot.queue).inc()
        self.ledger.mark_queued(slot.name, task_id)
        log.info("job queued %s", kv(task_id=task_id, slot=slot.name, queue=slot.queue))

    def recover(self, slot: SlotConfig) -> None:
        """Send the jobs a crash left unsent (recorded, never enqueued)."""
        for rec in self.ledger.in_state(slot.name, {TaskState.RECEIVED}):
            log.warning("re-sending job recorded before a restart %s",
                        kv(task_id=rec.task.id, slot=slot.name))
            self.send(slot, rec.task)


class SlotSession(threading.Thread):
    """Keeps one slot registered with the coordinator for as long as the listener runs."""

    def __init__(self, cfg: RollerConfig, slot: SlotConfig, account: LocalAccount,
                 dispatcher: Dispatcher, submitter: Submitter, stopping: threading.Event) -> None:
        super().__init__(name=f"session-{slot.name}", daemon=True)
        self.cfg = cfg
        self.slot = slot
        self.account = account
        self.dispatcher = dispatcher
        self.submitter = submitter
        self.stopping = stopping
        self.pending: list[TaskMsg] = []
        self.lock = threading.Lock()
        self.client: CoordinatorClient | None = None
        self.connect_attempts = 0

    def _on_task(self, task: TaskMsg) -> None:
        log.info("task received %s", kv(task_id=task.id, slot=self.slot.name, type=task.type,
                                        blocks=len(task.block_hashes),
                                        sub_proofs=len(task.sub_proofs)))
        metrics.TASKS_RECEIVED.labels(self.slot.name, proof_kind(task.type)).inc()
        with self.lock:
            self.pending.append(task)
        self._flush_pending()

    def _flush_pending(self) -> None:
        """Dispatch received tasks; on a Redis outage keep them and try again next tick."""
        with self.lock:
            tasks, self.pending = self.pending, []
        for i, task in enumerate(tasks):
            try:
                self.dispatcher.accept(self.slot, task)
            except (redis.RedisError, OSError) as exc:
                log.error("broker unavailable, task kept in memory %s",
                          kv(task_id=task.id, slot=self.slot.name, error=exc))
                with self.lock:
                    self.pending = tasks[i:] + self.pending
                return

    def _session(self) -> None:
        client = CoordinatorClient(self.cfg.coordinator_url, slot=self.slot.name)
        self.client = client
        self.connect_attempts += 1
        try:
            client.connect()
            client.register(self.account, self.slot.name, self.slot.prove_type, VERSION,
                            self._on_task)
            self.dispatcher.ledger.set_session(self.slot.name, "registered")
            metrics.session_state(self.slot.name, "registered")
            log.info("session registered %s", kv(slot=self.slot.name, queue=self.slot.queue))
            while client.connected and not self.stopping.is_set():
                self._flush_pending()
                self.submitter.drain(self.slot.name, self.account, client)
                self.stopping.wait(DRAIN_INTERVAL_SECONDS)
            if self.stopping.is_set():
                client.unsubscribe()
        finally:
            client.close()
            self.client = None

    def run(self) -> None:
        failures = 0
        retry = self.cfg.retry
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self._session()
            except (ConnectionLost, CoordinatorError, redis.RedisError, OSError) as exc:
                log.warning("session failed %s", kv(slot=self.slot.name, error=exc))
            if self.stopping.is_set():
                break
            metrics.session_state(self.slot.name, "disconnected")
            metrics.RECONNECTS.labels(self.slot.name).inc()
            try:
                self.dispatcher.ledger.set_session(self.slot.name, "disconnected")
            except redis.RedisError:
                log.warning("cannot record session state %s", kv(slot=self.slot.name))
            # A session that lasted a while resets the backoff.
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = reconnect_delay(failures, retry.reconnect_backoff_seconds,
                                    retry.reconnect_backoff_max_seconds)
            log.info("reconnecting %s", kv(slot=self.slot.name, in_s=round(delay, 2)))
            self.stopping.wait(delay)


class Listener:
    def __init__(self, cfg: RollerConfig, app: Celery | None = None) -> None:
        from roller.celery_app import app as default_app

        self.cfg = cfg
        self.ledger = TaskLedger.from_url(cfg.broker_url)
        self.dispatcher = Dispatcher(app or default_app, self.ledger)
        self.submitter = Submitter(self.ledger, cfg.retry, cfg.session_window_minutes * 60)
        self.stopping = threading.Event()
        self.sessions = [
            SlotSession(cfg, slot, load_or_create_keystore(slot.keystore_path,
                                                           cfg.keystore_password),
                        self.dispatcher, self.submitter, self.stopping)
            for slot in cfg.slots
        ]

    def start(self) -> None:
        for session in self.sessions:
            self.dispatcher.recover(session.slot)
            session.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for session in self.sessions:
            session.join(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m roller.listener",
        description="Keep one coordinator session per slot and turn every task into a Celery "
                    "job on the slot's queue (gpuN). It never proves: run one "
                    "`celery -A roller worker -Q gpuN` per GPU for that.")
    parser.add_argument("--config", help="roller config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.config)
        listener = Listener(cfg)
        metrics.serve_listener(cfg.metrics, listener.ledger.r, cfg.slots)
    except RollerError as exc:
        log.error("cannot start %s", kv(error=exc))
        return 2
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping %s", kv(signal=signal.Signals(signum).name))
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener.start()
    log.info("listener started %s", kv(slots=",".join(s.name for s in cfg.slots)))
    done.wait()
    listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
