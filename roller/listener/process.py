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

Failure model: a notification is recorded on receipt, connected or not
(roller.listener.intake); a broker outage keeps it in memory and retries it every second,
with a copy on disk (roller.spool: a listener stopped or killed in that state loses nothing,
its successor records them; a stop logs their ids);
a record left in flight with nothing working on it is re-driven by the reconciliation
(roller.listener.reconcile, by roller.lifecycle's liveness rule); a session that fails for any
reason, a bug included, is logged and reconnected, so no slot thread ever dies. SIGTERM:
unsubscribe, close, exit 0.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from roller.broker import BROKER_ERRORS
from roller.config import RollerConfig, SlotConfig
from roller.coordinator_session import SessionFactory
from roller.errors import RollerError
from roller.keys import load_or_create_keystore
from roller.ledger import TaskLedger
from roller.lifecycle import Observers
from roller.listener.dispatcher import Dispatcher
from roller.listener.reconcile import Reconciler
from roller.listener.slot_session import TICK_ERRORS, SlotSession
from roller.listener.submitter import Submitter
from roller.logs import kv
from roller.observe import metrics
from roller.protocol.messages import SLOT_TASK_TYPES
from roller.spool import HeldTasks

# Every part of the listener logs as `roller.listener`: the name its lines always had.
log = logging.getLogger("roller.listener")


class Listener:
    def __init__(self, cfg: RollerConfig, app: Celery | None = None,
                 events: Observers | None = None) -> None:
        from roller.celery_app import app as default_app

        self.cfg = cfg
        self.ledger = TaskLedger.from_url(cfg.broker_url, cfg.retention_seconds)
        # The process's observers of lifecycle events: the Prometheus metrics by default.
        self.events = events if events is not None else Observers([metrics.record])
        self.dispatcher = Dispatcher(app or default_app, self.ledger, self._wake, cfg.retry,
                                     self.events, cfg.prover.fork_names,
                                     cfg.coordinator.hard_fork_name)
        self.reconciler = Reconciler(self.ledger, self.dispatcher.send, cfg.window_seconds,
                                     events=self.events)
        self.dispatcher.check = self.reconciler.check
        self.submitter = Submitter(self.ledger, cfg.retry, cfg.window_seconds,
                                   events=self.events)
        self.stopping = threading.Event()
        # Decrypting starts now, in slot order, one thread per core: scrypt runs outside the
        # GIL, and a slot waits only for its own key (64 slots took 172 s one after another).
        self._keys = ThreadPoolExecutor(max_workers=max(1, min(len(cfg.slots),
                                                                os.cpu_count() or 1)),
                                        thread_name_prefix="keystore")
        factory = SessionFactory(cfg, held_vks=self._held_vks)
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
            session.intake.preload(tasks)
        self._keys.shutdown(wait=False)
        self._waker = threading.Thread(target=self._wake_on_proofs, name="proof-waker",
                                       daemon=True)

    def _held_vks(self, slot: SlotConfig) -> tuple[str, ...]:
        """The verifying keys of the held forks' circuits of the slot's types, as this host's
        workers published them (roller.ledger.vks); none while Redis cannot be read."""
        types = SLOT_TASK_TYPES.get(slot.prove_type, (slot.prove_type,))
        try:
            return self.ledger.vks(self.cfg.prover.fork_names, [int(t) for t in types])
        except BROKER_ERRORS as exc:
            log.warning("verifying keys unavailable for the login %s",
                        kv(slot=slot.name, error=exc))
            return ()

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
            held = session.intake.held_ids()
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
