"""The listener: one coordinator session per slot, tasks recorded in Redis and sent to Celery.

`python -m roller.listener --config config.json`. It never proves, and it is the one
process that speaks to the coordinator and holds the slots' keys. For each slot it opens a
coordinator session of the configured generation (roller.coordinator_session: the 2023
WebSocket protocol, which pushes tasks, or an HTTP + JWT one, which the session polls while
the slot is idle) and reopens it with capped exponential backoff plus jitter. A
notification is recorded in the ledger first (which tells a new assignment from a
duplicate) and then sent as one Celery job with a deterministic id to the slot's queue.
Workers store their answers in the outbox and wake the listener, which submits them over
the slot's session. Keystores are decrypted in parallel (scrypt, ~1 s each, runs outside
the GIL) and each slot's session starts as soon as its own key is ready.

Failure model: a broker outage keeps notifications in memory and retries them every tick,
with a copy on disk (roller.spool: a listener stopped or killed in that state loses nothing,
its successor records them; a stop logs their ids);
a record left in flight with nothing working on it is re-driven by the reconciliation
(roller.reconcile, by roller.lifecycle's liveness rule); a session that fails for any
reason, a bug included, is logged and reconnected, so no slot thread ever dies. SIGTERM:
unsubscribe, close, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from celery import Celery
from eth_account.signers.local import LocalAccount

from roller.broker import BROKER_ERRORS
from roller.config import RetryConfig, RollerConfig, SlotConfig, process_config, proof_kind
from roller.coordinator_session import SessionFactory
from roller.errors import (
    BrokerUnavailable,
    ConnectionLost,
    CoordinatorError,
    RollerError,
    WireFormatError,
    WrongGeneration,
)
from roller.failures import BUDGET_SPENT, failure
from roller.keys import load_or_create_keystore
from roller.ledger import AssignResult, TaskLedger, TaskRecord, TaskState, job_id
from roller.lifecycle import WINDOW_PASSED
from roller.logs import kv, setup_logging
from roller.operator import metrics
from roller.operator.config_check import orphan_keystores
from roller.pipeline import room_on_queue
from roller.protocol.http_messages import task_generation
from roller.protocol.messages import (
    FailureClass,
    ProofDetail,
    RespStatus,
    TaskMsg,
    slot_proves,
)
from roller.protocol.session import CoordinatorSession
from roller.reconcile import Reconciler
from roller.spool import HeldTasks
from roller.submitter import Submitter

log = logging.getLogger("roller.listener")

DRAIN_INTERVAL_SECONDS = 1.0
# How often a registered slot tells `roller status` its listener is alive (a write, fsynced:
# not every tick); status calls a slot silent for 15 s disconnected.
HEARTBEAT_SECONDS = 5.0
# A tick's work fails on these, never the session: the next tick retries.
TICK_ERRORS: tuple[type[Exception], ...] = (BrokerUnavailable, *BROKER_ERRORS)
SESSION_ERRORS: tuple[type[Exception], ...] = (ConnectionLost, CoordinatorError,
                                               WrongGeneration, *BROKER_ERRORS)


def reconnect_delay(failures: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter: a restarted coordinator sees no storm."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 30)))


class Dispatcher:
    """Records each notification durably, then enqueues its one Celery job on the slot's
    queue, unless the task is answered at once without one: a task this identity cannot
    prove (remembered by the job that failed it deterministically, roller.failures), or one
    it has started `retry.max_task_attempts` times, gets a failure report at once, so a
    coordinator that hands it back (H2/H3 do at once) costs no GPU time and no trace fetch.
    Every Redis, kombu or Celery error is mapped to BrokerUnavailable here."""

    def __init__(self, app: Celery, ledger: TaskLedger, wake: Callable[[str], None],
                 retry: RetryConfig | None = None) -> None:
        self.app = app
        self.ledger = ledger
        self.wake = wake
        self.retry = retry or RetryConfig()
        # The liveness rule for a re-notified task in flight (the listener's Reconciler).
        self.check: Callable[[SlotConfig, str], int] | None = None

    def accept(self, slot: SlotConfig, task: TaskMsg, epoch: int) -> AssignResult | None:
        """Act on one notification (the rule is in roller.ledger); None if ignored."""
        fields = kv(task_id=task.id, slot=slot.name)
        if not slot_proves(slot.prove_type, task.type):
            log.error("task of the wrong type ignored %s type=%s want=%s", fields, task.type,
                      slot.prove_type)
            return None
        try:
            assigned = self.ledger.assign(slot.name, task, epoch)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot record task {task.id} of slot {slot.name}: "
                                    f"{exc}") from exc
        result, state = assigned.result, assigned.state
        if result in (AssignResult.REPROVE, AssignResult.RESUBMIT, AssignResult.CARRIED):
            log.info("task assigned again %s assignment=%d result=%s state=%s", fields,
                     assigned.assignment, result, state)
        if result is AssignResult.IN_FLIGHT:
            log.info("duplicate task notification, not enqueued %s state=%s", fields, state)
            metrics.TASKS_DEDUPLICATED.labels(slot.name).inc()
        if state == TaskState.RECEIVED:
            if not self._answered_without_job(slot, task):
                self.send(slot, task.id)
        elif state == TaskState.PROVED:
            self.wake(slot.name)  # its answer is due in the outbox now
        elif self.check is not None:
            # In flight: a re-notification of a task nothing works on any more re-drives it
            # (by the liveness rule, grace included).
            try:
                self.check(slot, task.id)
            except BROKER_ERRORS as exc:
                raise BrokerUnavailable(f"cannot check task {task.id} of slot {slot.name}: "
                                        f"{exc}") from exc
        return result

    def _answered_without_job(self, slot: SlotConfig, task: TaskMsg) -> bool:
        """Answer a received task at once if this identity will not prove it (the class's
        docstring); True if it needs no job."""
        fields = kv(task_id=task.id, slot=slot.name)
        budget = self.retry.max_task_attempts
        try:
            report = self.ledger.unprovable(slot.name, task.id)
            if report is not None:
                detail = failure(task, FailureClass.DETERMINISTIC, report)
            else:
                spent = self.ledger.task_attempts(slot.name, task.id)
                if spent < budget:
                    return False
                detail = failure(task, FailureClass.TRANSIENT,
                                 f"{BUDGET_SPENT}: {spent} of {budget} attempts")
            moved = self.ledger.answer_now(slot.name, detail)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot answer task {task.id} of slot {slot.name}: "
                                    f"{exc}") from exc
        if not moved.ok:
            # Its job was sent meanwhile (the reconciliation): that one answers the task.
            log.info("task not answered at once, its job is out %s state=%s", fields,
                     moved.state)
            return True
        log.info("task answered at once without a job %s reason=%r", fields, detail.error)
        metrics.TASKS_ANSWERED_WITHOUT_JOB.labels(slot.name,
                                                  detail.failure_class or "").inc()
        self.wake(slot.name)  # its answer is due in the outbox now
        return True

    def send(self, slot: SlotConfig, task_id: str) -> None:
        """Enqueue the task's job and mark it queued; BrokerUnavailable leaves the record in
        `received`, which the sender's retry or the reconciliation sends again."""
        try:
            rec = self.ledger.get(slot.name, task_id)
            if rec is None:
                return
            task = rec.task
            size = len(task.sub_proofs) if task.type else len(task.block_hashes)
            # The kind label names the coordinator generation too, for Flower's job list.
            label = f"{proof_kind(task.type)} {task_generation(task)}"
            # A new drive number per message: a stale message of an earlier drive is told
            # apart by its job (roller.ledger).
            drive = self.ledger.begin_send(slot.name, task_id)
            self.app.send_task("roller.prove", args=(slot.name, task_id, label, size, drive),
                               task_id=job_id(slot.name, task_id, drive), queue=slot.queue,
                               ignore_result=True)
            self.ledger.mark_queued(slot.name, task_id)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot enqueue task {task_id} of slot {slot.name}: "
                                    f"{exc}") from exc
        metrics.JOBS_QUEUED.labels(slot.queue).inc()
        log.info("job queued %s", kv(task_id=task_id, slot=slot.name, queue=slot.queue))


class SlotSession(threading.Thread):
    """Keeps one slot registered with the coordinator for as long as the listener runs: it
    dispatches the slot's notifications, delivers its answers and reconciles its records.
    Nothing ends this thread but the listener's stop. `sessions` makes the slot's
    coordinator session for each connection; the listener's slots share one, so the
    generation is detected once and the L2 head read once for all of them."""

    def __init__(self, cfg: RollerConfig, slot: SlotConfig,
                 account: LocalAccount | Future[LocalAccount],
                 dispatcher: Dispatcher, submitter: Submitter, reconciler: Reconciler,
                 stopping: threading.Event, sessions: SessionFactory | None = None,
                 spool: HeldTasks | None = None) -> None:
        super().__init__(name=f"session-{slot.name}", daemon=True)
        self.cfg = cfg
        self.slot = slot
        # The key, or its decryption still running: run() waits for it before connecting.
        self._key = account if isinstance(account, Future) else None
        self.account: LocalAccount | None = None if isinstance(account, Future) else account
        self.key_error: RollerError | None = None
        self.dispatcher = dispatcher
        self.submitter = submitter
        self.reconciler = reconciler
        self.stopping = stopping
        self.wake = threading.Event()
        self.pending: list[tuple[TaskMsg, int]] = []
        self.lock = threading.Lock()
        # A copy on disk of what `pending` holds while the broker is down.
        self.spool = spool
        self.sessions = sessions or SessionFactory(cfg)
        self.coordinator: CoordinatorSession | None = None
        self.epoch = 0
        self.connect_attempts = 0
        self._next_sweep = 0.0
        self._next_heartbeat = 0.0
        self._fence_logged = False
        self._next_fence_check = 0.0

    def _on_task(self, task: TaskMsg) -> None:
        """On the session's reader or poll thread: note the task and hand it to the slot's
        thread, so a slow broker never holds up the coordinator connection."""
        log.info("task received %s", kv(task_id=task.id, slot=self.slot.name, type=task.type,
                                        blocks=len(task.block_hashes),
                                        sub_proofs=len(task.sub_proofs)))
        metrics.TASKS_RECEIVED.labels(self.slot.name, proof_kind(task.type)).inc()
        with self.lock:
            self.pending.append((task, self.epoch))
        self.wake.set()

    def _idle(self) -> bool:
        """Whether a polling session may ask for a task: the coordinator keeps one assigned
        task per key, so not while one is received, in flight or waiting in the outbox, nor
        while its GPU queue holds what the session window can prove (roller.pipeline). A
        ledger that cannot be read says busy: asking then could pile up assignments."""
        with self.lock:
            if self.pending:
                return False
        try:
            return not self.dispatcher.ledger.live_rows(self.slot.name) \
                and not self._fenced() \
                and room_on_queue(self.cfg, self.slot, self.dispatcher.ledger)
        except BROKER_ERRORS:
            return False

    def _fenced(self) -> bool:
        """Whether the GPU of the slot's queue is fenced (roller.worker.gpu_guard): then the
        slot asks for no work, and unregisters once nothing of it is in flight."""
        reason = self.dispatcher.ledger.fenced(self.slot.queue)
        if reason is not None and not self._fence_logged:
            log.warning("GPU of the slot's queue fenced, asking for no work %s",
                        kv(slot=self.slot.name, queue=self.slot.queue, reason=reason))
        self._fence_logged = reason is not None
        return reason is not None

    def _leave_for_fence(self) -> bool:
        """A registered slot whose GPU is fenced and that has nothing in flight unregisters
        (a pushing coordinator would keep sending it tasks)."""
        try:
            return self._fenced() and not self.dispatcher.ledger.live_rows(self.slot.name)
        except BROKER_ERRORS:
            return False

    def _flush_pending(self) -> None:
        """Dispatch received tasks; on a broker outage keep them (in memory and in the
        spool) and try again next tick."""
        with self.lock:
            tasks, self.pending = self.pending, []
        for i, (task, epoch) in enumerate(tasks):
            try:
                self.dispatcher.accept(self.slot, task, epoch)
            except BrokerUnavailable as exc:
                log.error("broker unavailable, task kept in memory %s",
                          kv(task_id=task.id, slot=self.slot.name, error=exc))
                with self.lock:
                    self.pending = tasks[i:] + self.pending
                    held = [t for t, _ in self.pending]
                if self.spool is not None:
                    self.spool.keep(self.slot.name, held)
                return
        if tasks and self.spool is not None:
            self.spool.keep(self.slot.name, [])

    def _tick(self, session: CoordinatorSession) -> None:
        self._flush_pending()
        try:
            if time.monotonic() >= self._next_heartbeat:
                self._next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
                self.dispatcher.ledger.touch_session(self.slot.name,
                                                     token_expires=session.token_expires)
                metrics.TOKEN_EXPIRES.labels(self.slot.name).set(session.token_expires or 0)
            assert self.account is not None  # run() connects only with the key
            self.submitter.drain(self.slot.name, self.account, session)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.cfg.reconcile_interval_seconds
                self.reconciler.sweep(self.slot, on_expired=self._report_expired)
        except TICK_ERRORS as exc:
            log.error("broker unavailable, outbox and reconciliation wait %s",
                      kv(slot=self.slot.name, error=exc))

    def _report_expired(self, slot: SlotConfig, rec: TaskRecord) -> None:
        """Tell the coordinator that a task the window expired unanswered will not be
        answered, where the generation takes a failure report: once, best effort (the
        record is final already; the coordinator's own timer is the fallback)."""
        session, fields = self.coordinator, kv(task_id=rec.task.id, slot=slot.name)
        if session is None or not session.connected or self.account is None:
            return
        detail = ProofDetail(id=rec.task.id, type=rec.task.type, status=RespStatus.ERROR,
                             proof=None, error=WINDOW_PASSED)
        try:
            session.submit(rec.task, detail, self.account)
        except (CoordinatorError, ConnectionLost, WireFormatError) as exc:
            log.info("expiry not reported %s error=%r", fields, str(exc))
            return
        log.info("expiry reported to the coordinator %s", fields)

    def _session(self) -> None:
        self.connect_attempts += 1
        assert self.account is not None  # run() connects only with the key
        session = self.sessions.new(self.slot, self.account)
        self.coordinator = session
        ledger = self.dispatcher.ledger
        try:
            # A new registration (WS) or login (HTTP): what the coordinator sends from now
            # on is a new assignment.
            self.epoch = ledger.next_epoch(self.slot.name)
            session.open(self._on_task, self._idle)
            ledger.set_session(self.slot.name, "registered", generation=session.generation,
                               token_expires=session.token_expires)
            metrics.session_state(self.slot.name, "registered", session.generation,
                                  session.token_expires)
            log.info("session registered %s", kv(slot=self.slot.name, queue=self.slot.queue,
                                                  epoch=self.epoch,
                                                  generation=session.generation))
            while session.connected and not self.stopping.is_set():
                self._tick(session)
                if time.monotonic() >= self._next_fence_check:
                    self._next_fence_check = time.monotonic() + HEARTBEAT_SECONDS
                    if self._leave_for_fence():
                        return
                self.wake.wait(DRAIN_INTERVAL_SECONDS)
                self.wake.clear()
        finally:
            session.close()  # unsubscribes first where the protocol has it
            self.coordinator = None

    def _await_key(self) -> bool:
        """The slot's key; False (and `key_error` set) if its keystore cannot be opened."""
        if self.account is not None:
            return True
        assert self._key is not None
        try:
            self.dispatcher.ledger.set_session(self.slot.name, "waiting for key")
        except BROKER_ERRORS:
            log.warning("cannot record session state %s", kv(slot=self.slot.name))
        try:
            self.account = self._key.result()
        except RollerError as exc:
            self.key_error = exc
            return False
        return True

    def run(self) -> None:
        if not self._await_key():
            return
        failures = 0
        retry = self.cfg.retry
        while not self.stopping.is_set():
            if self._leave_for_fence():
                try:
                    self.dispatcher.ledger.set_session(self.slot.name, "fenced")
                except BROKER_ERRORS:
                    log.warning("cannot record session state %s", kv(slot=self.slot.name))
                self.stopping.wait(HEARTBEAT_SECONDS)  # until a healthy worker clears it
                continue
            started = time.monotonic()
            try:
                self._session()
            except WrongGeneration as exc:
                log.error("coordinator speaks another generation %s",
                          kv(slot=self.slot.name, error=exc))
                self.sessions.forget_detection()
            except SESSION_ERRORS as exc:
                log.warning("session failed %s", kv(slot=self.slot.name, error=exc))
            except Exception:  # noqa: BLE001 (last resort: the slot must outlive any bug)
                log.exception("session crashed, reconnecting %s", kv(slot=self.slot.name))
            if self.stopping.is_set():
                break
            metrics.session_state(self.slot.name, "disconnected")
            metrics.RECONNECTS.labels(self.slot.name).inc()
            try:
                self.dispatcher.ledger.set_session(self.slot.name, "disconnected")
            except BROKER_ERRORS:
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
        self.ledger = TaskLedger.from_url(cfg.broker_url, cfg.retention_seconds)
        self.dispatcher = Dispatcher(app or default_app, self.ledger, self._wake, cfg.retry)
        self.reconciler = Reconciler(self.ledger, self.dispatcher.send, cfg.window_seconds)
        self.dispatcher.check = self.reconciler.check
        self.submitter = Submitter(self.ledger, cfg.retry, cfg.window_seconds)
        self.stopping = threading.Event()
        # Decrypting starts now, in slot order, one thread per core: scrypt runs outside the
        # GIL, and a slot waits only for its own key (64 slots took 172 s one after another).
        self._keys = ThreadPoolExecutor(max_workers=max(1, min(len(cfg.slots),
                                                                os.cpu_count() or 1)),
                                        thread_name_prefix="keystore")
        factory = SessionFactory(cfg)
        self.spool = HeldTasks(cfg.db_path)
        self.sessions = {
            slot.name: SlotSession(cfg, slot,
                                   self._keys.submit(load_or_create_keystore,
                                                     slot.keystore_path, cfg.keystore_password),
                                   self.dispatcher, self.submitter, self.reconciler,
                                   self.stopping, factory, self.spool)
            for slot in cfg.slots
        }
        for name, tasks in self.spool.load().items():
            session = self.sessions.get(name)
            if session is None:
                log.warning("held tasks of a slot no longer configured, not recorded %s",
                            kv(slot=name, task_ids=",".join(t.id for t in tasks)))
                continue
            log.info("tasks held by the previous listener, to be recorded %s",
                     kv(slot=name, task_ids=",".join(t.id for t in tasks)))
            # Epoch 0: older than any registration, so an id recorded meanwhile is a duplicate.
            session.pending = [(t, 0) for t in tasks]
        self._keys.shutdown(wait=False)
        self._waker = threading.Thread(target=self._wake_on_proofs, name="proof-waker",
                                       daemon=True)

    def _wake(self, slot: str) -> None:
        session = self.sessions.get(slot)
        if session is not None:
            session.wake.set()

    def _wake_on_proofs(self) -> None:
        """Wake a slot the moment a worker stores its answer (the outbox is the truth; this
        list only saves the wait for the next tick)."""
        while not self.stopping.is_set():
            try:
                item = self.ledger.wait_proved(1.0)
            except BROKER_ERRORS as exc:
                log.warning("proof notifications unavailable %s", kv(error=exc))
                self.stopping.wait(1.0)
                continue
            if item is not None:
                self._wake(item[0])

    def start(self) -> None:
        """Recover first (index an older ledger, send what a crash left unsent), then
        start every slot's session."""
        for session in self.sessions.values():
            try:
                self.ledger.migrate([session.slot.name])
                self.reconciler.sweep(session.slot, startup=True)
            except TICK_ERRORS as exc:
                log.error("recovery postponed to the first sweep %s",
                          kv(slot=session.slot.name, error=exc))
        self._waker.start()
        for session in self.sessions.values():
            session.start()

    def first_key(self) -> None:
        """Wait for the first slot's key (about a second): a wrong password, which every
        slot shares, is then a one-line start-up error before anything else runs."""
        first = next(iter(self.sessions.values()))
        if first._key is None:
            return
        try:
            first._key.result()
        except RollerError:
            for session in self.sessions.values():
                if session._key is not None:
                    session._key.cancel()  # exit now, not after every other scrypt
            raise

    @property
    def key_error(self) -> RollerError | None:
        """The first keystore that could not be opened (the listener then cannot run)."""
        return next((s.key_error for s in self.sessions.values() if s.key_error), None)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for session in self.sessions.values():
            session.wake.set()
            session.join(timeout)
        for session in self.sessions.values():
            with session.lock:
                held = [task.id for task, _ in session.pending]
            if held:
                # Never recorded (the broker was down); the coordinator will not send them
                # again, so the spool's copy is what the next listener records.
                log.warning("tasks held in memory not recorded at stop, kept on disk %s",
                            kv(slot=session.slot.name, count=len(held), path=self.spool.path,
                               task_ids=",".join(held)))
            try:
                self.ledger.set_session(session.slot.name, "disconnected")
            except BROKER_ERRORS:
                log.warning("cannot record session state %s", kv(slot=session.slot.name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m roller.listener",
        description="Keep one coordinator session per slot and turn every task into a Celery "
                    "job on the slot's queue (gpuN). It never proves: run one "
                    "`celery -A roller worker -Q gpuN` per GPU for that.")
    parser.add_argument("--config", help="roller config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level)
    except RollerError as exc:
        print(f"roller listener: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = process_config(args.config)
        for name, path, others in orphan_keystores(cfg):
            log.warning("slot has no key and gets a new identity while other keystores "
                        "belong to no slot %s", kv(slot=name, keystore=path,
                                                   unclaimed=",".join(map(str, others))))
        from roller.celery_app import configure

        listener = Listener(cfg, configure(cfg))
        listener.first_key()
        metrics.serve_listener(cfg.metrics, listener.ledger, cfg.slots)
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
    while not done.wait(0.2):
        if listener.key_error is not None:
            # A keystore that cannot be opened (wrong password, bad file) is a start-up
            # error, found while the other slots already run: stop them all.
            log.error("cannot start %s", kv(error=listener.key_error))
            listener.stop()
            return 2
    listener.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
