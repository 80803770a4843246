"""The intake: a task the coordinator sends is recorded the moment it arrives, whatever the
slot's session does next.

A notification is recorded on the thread that delivers it (the WebSocket client's dispatch
thread, which drains what arrived before a disconnect too; the HTTP session's poll thread),
not on the slot's thread at its next tick: a task whose frame arrives with the connection's
close would otherwise wait in memory for the next session, and a listener killed in that
outage would lose it (the 2023 coordinators never send an assigned task again).

Failure model: while Redis is down a notification is held in memory with a copy in the spool
(roller.spool), and the slot's thread retries it every second, connected or not; a listener
killed in that state loses nothing, its successor records the spool's copy. Notifications
are recorded in arrival order, one recorder at a time. An error that is not the broker's (a
bug) leaves the task held and is raised to the caller.
"""

from __future__ import annotations

import logging
import threading

from roller.config import SlotConfig
from roller.errors import BrokerUnavailable
from roller.listener.dispatcher import Dispatcher
from roller.logs import kv
from roller.protocol.messages import TaskMsg
from roller.spool import HeldTasks

# Every part of the listener logs as `roller.listener`: the name its lines always had.
log = logging.getLogger("roller.listener")


class Intake:
    """One per slot: the notifications received and not yet recorded (normally none)."""

    def __init__(self, slot: SlotConfig, dispatcher: Dispatcher,
                 spool: HeldTasks | None = None) -> None:
        self.slot = slot
        self.dispatcher = dispatcher
        self.spool = spool
        # (task, epoch of the session that received it), in arrival order.
        self._held: list[tuple[TaskMsg, int]] = []
        self._lock = threading.Lock()
        # One recorder at a time (the delivering thread or the slot's retry), so the ledger
        # sees notifications in the order they arrived.
        self._recording = threading.Lock()

    def receive(self, task: TaskMsg, epoch: int) -> bool:
        """Record a notification now; True if everything received so far is recorded."""
        with self._lock:
            self._held.append((task, epoch))
        return self.record()

    def record(self) -> bool:
        """Record what is held, oldest first; True if nothing stays held. Stops at the first
        broker error (logged; the spool keeps the rest)."""
        with self._recording:
            with self._lock:
                todo = list(self._held)
            done = 0
            try:
                for task, epoch in todo:
                    self.dispatcher.accept(self.slot, task, epoch)
                    done += 1
            except BrokerUnavailable as exc:
                log.error("broker unavailable, task held in memory and on disk %s",
                          kv(task_id=todo[done][0].id, slot=self.slot.name, error=exc))
            finally:
                with self._lock:
                    del self._held[:done]
                    held = [task for task, _ in self._held]
                if self.spool is not None and todo:
                    self.spool.keep(self.slot.name, held)
            return not held

    def preload(self, tasks: list[TaskMsg]) -> None:
        """Hold what a previous listener left in the spool. Epoch 0: older than any
        registration, so an id recorded meanwhile is a duplicate."""
        with self._lock:
            self._held = [(task, 0) for task in tasks] + self._held

    def holds(self) -> bool:
        with self._lock:
            return bool(self._held)

    def held_ids(self) -> list[str]:
        with self._lock:
            return [task.id for task, _ in self._held]
