"""The slot session: one slot kept registered with its coordinator for as long as the
listener runs, on its own thread.

Failure model: a session that fails for any reason, a bug included, is logged and reopened
with capped exponential backoff plus jitter, so no slot thread ever dies; a notification is
recorded on receipt (roller.listener.intake), and one a broker outage held back is retried by
this thread every second, connected or not; a broker outage fails only the tick, which the
next one retries.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future

from eth_account.signers.local import LocalAccount

from roller.broker import BROKER_ERRORS
from roller.config import RollerConfig, SlotConfig
from roller.coordinator_session import SessionFactory
from roller.errors import (
    BrokerUnavailable,
    ConnectionLost,
    CoordinatorError,
    RollerError,
    WireFormatError,
    WrongGeneration,
)
from roller.ledger import TaskRecord
from roller.lifecycle import WINDOW_PASSED
from roller.lifecycle.events import Received, SessionLost, SessionUp, TokenRenewed
from roller.listener.dispatcher import Dispatcher
from roller.listener.intake import Intake
from roller.listener.queue_room import room_on_queue
from roller.listener.reconcile import Reconciler
from roller.listener.submitter import Submitter
from roller.logs import kv
from roller.protocol.messages import ProofDetail, RespStatus, TaskMsg
from roller.protocol.session import CoordinatorSession
from roller.spool import HeldTasks

# Every part of the listener logs as `roller.listener`: the name its lines always had.
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
        # The listener's observers (metrics): the dispatcher's, one set per process.
        self.events = dispatcher.events
        self.submitter = submitter
        self.reconciler = reconciler
        self.stopping = stopping
        self.wake = threading.Event()
        # What the coordinator sent, recorded on receipt (held while the broker is down).
        self.intake = Intake(slot, dispatcher, spool)
        self.sessions = sessions or SessionFactory(cfg)
        self.coordinator: CoordinatorSession | None = None
        self.epoch = 0
        self.connect_attempts = 0
        self._next_sweep = 0.0
        self._next_heartbeat = 0.0
        self._fence_logged = False
        self._next_fence_check = 0.0

    def _on_task(self, task: TaskMsg) -> None:
        """On the session's delivery thread (the WebSocket dispatch thread, the HTTP poll
        thread): record the task at once, connected or not (roller.listener.intake). A
        failure leaves it held, for this slot's thread to retry."""
        log.info("task received %s", kv(task_id=task.id, slot=self.slot.name, type=task.type,
                                        blocks=len(task.block_hashes),
                                        sub_proofs=len(task.sub_proofs)))
        self.events.emit(Received(self.slot.name, task.type))
        try:
            self.intake.receive(task, self.epoch)
        except Exception:  # noqa: BLE001 (a bug: the task stays held, the slot retries it)
            log.exception("task not recorded on receipt, held for a retry %s",
                          kv(task_id=task.id, slot=self.slot.name))
        self.wake.set()

    def _idle(self) -> bool:
        """Whether a polling session may ask for a task: the coordinator keeps one assigned
        task per key, so not while one is received, in flight or waiting in the outbox, nor
        while its GPU queue holds what the session window can prove
        (roller.listener.queue_room). A ledger that cannot be read says busy: asking then
        could pile up assignments."""
        if self.intake.holds():
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

    def _record_held(self) -> None:
        """Retry what a broker outage held back (nothing to do, normally)."""
        if self.intake.holds():
            self.intake.record()

    def _wait_recording(self, seconds: float) -> None:
        """Wait between sessions, still recording what is held every second: a task that
        arrived with the connection's close is recorded during the outage, not after it."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            try:
                self._record_held()
            except Exception:  # noqa: BLE001 (last resort: the slot must outlive any bug)
                log.exception("held tasks not recorded %s", kv(slot=self.slot.name))
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stopping.wait(min(left, DRAIN_INTERVAL_SECONDS))

    def _tick(self, session: CoordinatorSession) -> None:
        self._record_held()
        try:
            if time.monotonic() >= self._next_heartbeat:
                self._next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
                self.dispatcher.ledger.touch_session(self.slot.name,
                                                     token_expires=session.token_expires)
                self.events.emit(TokenRenewed(self.slot.name, session.token_expires or 0))
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
            self.events.emit(SessionUp(self.slot.name, session.generation,
                                       session.token_expires))
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
        self._wait_recording(0)  # what the previous listener's spool held, before any key
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
                self._wait_recording(HEARTBEAT_SECONDS)  # until a healthy worker clears it
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
            self.events.emit(SessionLost(self.slot.name))
            try:
                self.dispatcher.ledger.set_session(self.slot.name, "disconnected")
            except BROKER_ERRORS:
                log.warning("cannot record session state %s", kv(slot=self.slot.name))
            # A session that lasted a while resets the backoff.
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = reconnect_delay(failures, retry.reconnect_backoff_seconds,
                                    retry.reconnect_backoff_max_seconds)
            log.info("reconnecting %s", kv(slot=self.slot.name, in_s=round(delay, 2)))
            self._wait_recording(delay)
