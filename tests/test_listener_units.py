"""The listener's failure boundaries against a real redis-server, with a broker stand-in that
fails on cue: sends that fail after the record, reconciliation of stranded records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest

from roller.config import SlotConfig
from roller.errors import BrokerUnavailable
from roller.ledger import AssignResult, TaskLedger, TaskState, job_id
from roller.listener import Dispatcher
from roller.protocol.messages import TaskMsg
from roller.reconcile import GRACE_SECONDS, Reconciler

SLOT = SlotConfig("chunk-gpu0", "gpu0", 0, 0, Path("k.json"))
TASK = TaskMsg(id="0x" + "cd" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())


class FlakyCelery:
    """`send_task` raises kombu's OperationalError `fail` times, then records the job."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.sent: list[str] = []

    def send_task(self, name: str, args: tuple[Any, ...], **_: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390")
        self.sent.append(args[1])


@pytest.fixture
def ledger(redis_url: str) -> TaskLedger:
    return TaskLedger.from_url(redis_url)


class Rig:
    """A dispatcher over a flaky broker and a reconciler sending through it."""

    def __init__(self, ledger: TaskLedger, fail: int = 0, window: float = 3600) -> None:
        self.app = FlakyCelery(fail)
        self.dispatcher = Dispatcher(self.app, ledger,  # type: ignore[arg-type]
                                     lambda _slot: None)
        self.reconciler = Reconciler(ledger, self.dispatcher.send, window)


def state(ledger: TaskLedger) -> TaskState:
    rec = ledger.get(SLOT.name, TASK.id)
    assert rec is not None
    return rec.state


def age(ledger: TaskLedger) -> None:
    """Make the record look older than the reconciliation's grace period."""
    ledger.note(SLOT.name, TASK.id, updated_at=time.time() - GRACE_SECONDS - 1)


def test_send_failing_after_the_record_is_retried(ledger: TaskLedger) -> None:
    rig = Rig(ledger, fail=1)
    app, dispatcher = rig.app, rig.dispatcher
    with pytest.raises(BrokerUnavailable, match=f"task {TASK.id} of slot chunk-gpu0"):
        dispatcher.accept(SLOT, TASK, epoch=1)
    assert state(ledger) == TaskState.RECEIVED
    # The session keeps the notification and offers it again on its next tick.
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.UNSENT
    assert app.sent == [TASK.id] and state(ledger) == TaskState.QUEUED
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.IN_FLIGHT
    assert app.sent == [TASK.id]


def test_ledger_down_when_recording_is_a_broker_error(ledger: TaskLedger) -> None:
    down = TaskLedger.from_url("redis://127.0.0.1:1/0")
    dispatcher = Dispatcher(FlakyCelery(), down, lambda _slot: None)  # type: ignore[arg-type]
    with pytest.raises(BrokerUnavailable, match="cannot record task"):
        dispatcher.accept(SLOT, TASK, epoch=1)


def test_reconcile_sends_what_a_crash_left_unsent(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    ledger.assign(SLOT.name, TASK, epoch=1)  # the listener died before sending
    assert rig.reconciler.sweep(SLOT, confirm=False) == 1
    app = rig.app
    assert app.sent == [TASK.id] and state(ledger) == TaskState.QUEUED


def test_reconcile_redrives_a_job_that_raised_after_two_sightings(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    app, reconciler = rig.app, rig.reconciler
    ledger.assign(SLOT.name, TASK, epoch=1)
    ledger.mark_queued(SLOT.name, TASK.id)
    assert ledger.acquire_lease(SLOT.name, TASK.id, "w:1", 30)
    assert ledger.start_attempt(SLOT.name, TASK.id, "w:1", "w", "gpu0").started
    assert reconciler.sweep(SLOT) == 0  # leased: a worker proves it
    ledger.release_lease(SLOT.name, TASK.id, "w:1")  # the job raised; Celery acked it
    age(ledger)
    assert reconciler.sweep(SLOT) == 0  # first sighting
    assert reconciler.sweep(SLOT) == 1
    assert app.sent == [TASK.id] and state(ledger) == TaskState.QUEUED


def test_reconcile_leaves_a_waiting_job_alone(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    app, reconciler = rig.app, rig.reconciler
    ledger.assign(SLOT.name, TASK, epoch=1)
    ledger.mark_queued(SLOT.name, TASK.id)
    age(ledger)
    message = f'{{"headers": {{"id": "{job_id(SLOT.name, TASK.id)}"}}}}'
    ledger.r.lpush("gpu0\x06\x163", message)  # waiting in a priority list
    assert reconciler.sweep(SLOT) == 0 and reconciler.sweep(SLOT) == 0
    ledger.r.delete("gpu0\x06\x163")
    ledger.r.hset("unacked", "tag1", f'[{message}, "", "gpu0"]')  # held by a worker
    assert reconciler.sweep(SLOT) == 0 and reconciler.sweep(SLOT) == 0
    assert app.sent == []


def test_reconcile_expires_a_task_whose_window_passed(ledger: TaskLedger) -> None:
    rig = Rig(ledger, window=60)
    ledger.assign(SLOT.name, TASK, epoch=1, now=time.time() - 120)
    age(ledger)
    assert rig.reconciler.sweep(SLOT, confirm=False) == 0
    app = rig.app
    assert state(ledger) == TaskState.EXPIRED and app.sent == []


def test_renotified_stranded_task_is_redriven(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    app, dispatcher = rig.app, rig.dispatcher
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.NEW
    age(ledger)  # its job message is gone: nothing works on it
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.IN_FLIGHT
    assert app.sent == [TASK.id, TASK.id]
