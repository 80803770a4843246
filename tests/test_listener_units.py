"""The listener's failure boundaries against a real redis-server, with a broker stand-in that
fails on cue: sends that fail after the record, and the reconciliation's two policies
(roller.lifecycle: liveness from the lease, with an injected clock; the session window)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest
from eth_account import Account

from roller.config import SlotConfig, parse_config
from roller.errors import BrokerUnavailable
from roller.ledger import AssignResult, TaskLedger, TaskState, job_id
from roller.lifecycle import LIVENESS_GRACE_SECONDS, SEND_GRACE_SECONDS, Liveness
from roller.listener import Dispatcher, SlotSession
from roller.listener.intake import Intake
from roller.listener.reconcile import Reconciler
from roller.listener.submitter import Submitter
from roller.protocol.http_enums import Generation
from roller.protocol.http_messages import GetTaskResponse, to_task_msg
from roller.protocol.messages import TaskMsg
from roller.spool import HeldTasks

SLOT = SlotConfig("chunk-gpu0", "gpu0", 0, 0, Path("k.json"))
TASK = TaskMsg(id="0x" + "cd" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())


class FlakyCelery:
    """`send_task` raises kombu's OperationalError `fail` times, then records the job."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.sent: list[str] = []
        self.job_ids: list[str] = []

    def send_task(self, name: str, args: tuple[Any, ...], **kw: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390")
        self.sent.append(args[1])
        self.job_ids.append(kw["task_id"])


class Clock:
    """The reconciler's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ledger(redis_url: str) -> TaskLedger:
    return TaskLedger.from_url(redis_url)


class Rig:
    """A dispatcher over a flaky broker and a reconciler sending through it, on a clock."""

    def __init__(self, ledger: TaskLedger, fail: int = 0, window: float = 3600) -> None:
        self.app = FlakyCelery(fail)
        self.clock = Clock()
        self.dispatcher = Dispatcher(self.app, ledger,  # type: ignore[arg-type]
                                     lambda _slot: None)
        self.reconciler = Reconciler(ledger, self.dispatcher.send, window,
                                     Liveness(clock=self.clock))
        self.dispatcher.check = self.reconciler.check
        self.expired: list[str] = []

    def sweep(self) -> int:
        return self.reconciler.sweep(SLOT, on_expired=lambda _s, rec:
                                     self.expired.append(rec.task.id))


def slot_session(ledger: TaskLedger, rig: Rig, tmp_path: Path, scheme: str) -> SlotSession:
    """A slot's session thread (not started) over the rig's dispatcher and reconciler, for a
    coordinator of `scheme` (http: a polling generation; ws: a pushing one)."""
    cfg = parse_config({"roller_name": "r", "keystore_path": "k.json", "keystore_password": "x",
                        "coordinator_url": f"{scheme}://127.0.0.1:9/", "trace_endpoint":
                        "http://127.0.0.1:9/", "broker_url": "redis://127.0.0.1:9/0"},
                       tmp_path, env={})
    return SlotSession(cfg, SLOT, Account.create(), rig.dispatcher,
                       Submitter(ledger, cfg.retry, 3600), rig.reconciler, threading.Event())


def state(ledger: TaskLedger) -> TaskState:
    rec = ledger.get(SLOT.name, TASK.id)
    assert rec is not None
    return rec.state


def proving(ledger: TaskLedger, rig: Rig, owner: str = "w:1") -> None:
    """The task sent and taken by a worker, which holds its lease."""
    assert rig.dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.NEW
    assert ledger.acquire_lease(SLOT.name, TASK.id, owner, 30)
    assert ledger.start_attempt(SLOT.name, TASK.id, owner, "w", "gpu0").started


def held_unacked(ledger: TaskLedger, job: str) -> None:
    """kombu's record of a message delivered to a worker and not acknowledged."""
    message = f'{{"headers": {{"id": "{job}"}}}}'
    ledger.r.hset("unacked", "tag1", f'[{message}, "", "gpu0"]')


def waiting(ledger: TaskLedger, job: str) -> None:
    ledger.r.lpush("gpu0\x06\x163", f'{{"headers": {{"id": "{job}"}}, "body": ""}}')


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
    assert rig.reconciler.sweep(SLOT, startup=True) == 1
    assert rig.app.sent == [TASK.id] and state(ledger) == TaskState.QUEUED


def test_a_young_unsent_record_waits_for_its_sender(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    ledger.assign(SLOT.name, TASK, epoch=1)
    assert rig.sweep() == 0  # the dispatcher may be sending it right now
    rig.clock.advance(SEND_GRACE_SECONDS + 1)
    assert rig.sweep() == 1


def test_liveness_rule_dead_worker_with_its_message_unacked(ledger: TaskLedger) -> None:
    """The rule the fleet relies on: a lease gone while kombu still holds the job message
    unacknowledged (a SIGKILLed worker) is re-driven after the grace, with a new drive."""
    rig = Rig(ledger)
    proving(ledger, rig)
    held_unacked(ledger, rig.app.job_ids[0])
    assert rig.sweep() == 0  # leased
    ledger.r.delete(f"roller:lock:{SLOT.name}:{TASK.id}")  # the worker died: TTL ran out
    assert rig.sweep() == 0  # first sighting
    rig.clock.advance(LIVENESS_GRACE_SECONDS - 1)
    assert rig.sweep() == 0
    rig.clock.advance(1)
    assert rig.sweep() == 1
    assert rig.app.sent == [TASK.id, TASK.id] and state(ledger) == TaskState.QUEUED
    rec = ledger.get(SLOT.name, TASK.id)
    assert rec is not None and rec.drive == 2
    assert rig.app.job_ids[1] == job_id(SLOT.name, TASK.id, 2) != rig.app.job_ids[0]


def test_liveness_rule_a_renewed_lease_is_left_alone(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    proving(ledger, rig)
    for _ in range(10):  # a proof of many grace periods, its lease renewed throughout
        rig.clock.advance(LIVENESS_GRACE_SECONDS)
        assert ledger.retake_lease(SLOT.name, TASK.id, "w:1", 30) == 1
        assert rig.sweep() == 0
    assert rig.app.sent == [TASK.id] and state(ledger) == TaskState.PROVING


def test_a_lease_back_within_the_grace_resets_it(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    proving(ledger, rig)
    ledger.release_lease(SLOT.name, TASK.id, "w:1")  # lost in a Redis restart
    assert rig.sweep() == 0
    rig.clock.advance(LIVENESS_GRACE_SECONDS - 1)
    assert ledger.retake_lease(SLOT.name, TASK.id, "w:1", 30) == 2  # the job took it back
    assert rig.sweep() == 0
    ledger.release_lease(SLOT.name, TASK.id, "w:1")
    assert rig.sweep() == 0  # a new sighting: its grace starts again
    rig.clock.advance(LIVENESS_GRACE_SECONDS - 1)
    assert rig.sweep() == 0
    rig.clock.advance(1)
    assert rig.sweep() == 1


def test_a_job_waiting_in_its_queue_is_alive(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    assert rig.dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.NEW
    waiting(ledger, rig.app.job_ids[0])  # behind other jobs on the GPU
    for _ in range(5):
        rig.clock.advance(LIVENESS_GRACE_SECONDS)
        assert rig.sweep() == 0
    # A message of an earlier drive waiting is no sign of life for the current one.
    ledger.r.delete("gpu0\x06\x163")
    waiting(ledger, job_id(SLOT.name, TASK.id, 0))
    assert rig.sweep() == 0
    rig.clock.advance(LIVENESS_GRACE_SECONDS)
    assert rig.sweep() == 1
    assert rig.app.sent == [TASK.id, TASK.id]


def test_a_job_that_raised_is_redriven_after_the_grace(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    proving(ledger, rig)
    ledger.release_lease(SLOT.name, TASK.id, "w:1")  # the job raised; Celery acked it
    assert rig.sweep() == 0
    rig.clock.advance(LIVENESS_GRACE_SECONDS)
    assert rig.sweep() == 1 and state(ledger) == TaskState.QUEUED


def test_reconcile_expires_every_live_record_past_the_window(ledger: TaskLedger) -> None:
    rig = Rig(ledger, window=60)
    proving(ledger, rig)  # leased and alive: the window still applies
    rig.clock.advance(61)
    assert rig.sweep() == 0
    assert state(ledger) == TaskState.EXPIRED and rig.app.sent == [TASK.id]
    assert rig.expired == [TASK.id]  # the listener reports it where the generation can


def test_renotified_dead_task_is_redriven(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    app, dispatcher = rig.app, rig.dispatcher
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.NEW
    # Its job message is gone and no lease: nothing works on it. The first sighting...
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.IN_FLIGHT
    assert app.sent == [TASK.id]
    rig.clock.advance(LIVENESS_GRACE_SECONDS)
    # ... and a re-notification after the grace re-drives it.
    assert dispatcher.accept(SLOT, TASK, epoch=1) is AssignResult.IN_FLIGHT
    assert app.sent == [TASK.id, TASK.id]


def test_a_fenced_gpu_queue_asks_for_no_work(ledger: TaskLedger, tmp_path: Path) -> None:
    """A worker fenced its GPU (roller.worker.gpu_guard): the queue's slots stop asking for
    work and leave once nothing of theirs is in flight; a healthy worker's start clears it."""
    rig = Rig(ledger)
    session = slot_session(ledger, rig, tmp_path, "http")
    assert session._idle() and not session._leave_for_fence()
    ledger.fence(SLOT.queue, "GPU lost")
    assert ledger.fenced(SLOT.queue) == "GPU lost"
    assert not session._idle() and session._leave_for_fence()
    rig.dispatcher.accept(SLOT, TASK, epoch=1)  # something in flight: stay to deliver it
    assert not session._leave_for_fence()
    ledger.unfence([SLOT.queue])
    assert ledger.fenced(SLOT.queue) is None


# -- Record on receipt (roller.listener.intake) ------------------------------------------------

TASK_B = TaskMsg(id="0x" + "ef" * 32, type=0, block_hashes=("0x" + "22" * 32,), sub_proofs=())


def test_a_task_is_recorded_on_receipt(ledger: TaskLedger) -> None:
    """On the delivering thread, with no session tick: nothing waits in memory."""
    rig = Rig(ledger)
    intake = Intake(SLOT, rig.dispatcher)
    assert intake.receive(TASK, epoch=1)
    assert state(ledger) == TaskState.QUEUED and not intake.holds()


def test_a_broker_outage_holds_tasks_on_disk_in_order(ledger: TaskLedger,
                                                      tmp_path: Path) -> None:
    """Redis down at receipt: held in memory and in the spool, then recorded oldest first
    by the retry, and the spool emptied."""
    spool = HeldTasks(tmp_path / "roller.db")
    down = Dispatcher(FlakyCelery(), TaskLedger.from_url("redis://127.0.0.1:1/0"),
                      lambda _slot: None)  # type: ignore[arg-type]
    intake = Intake(SLOT, down, spool)
    assert not intake.receive(TASK, epoch=1)
    assert not intake.receive(TASK_B, epoch=1)
    assert intake.held_ids() == [TASK.id, TASK_B.id]
    assert [t.id for t in HeldTasks(spool.path).load()[SLOT.name]] == [TASK.id, TASK_B.id]
    rig = Rig(ledger)
    intake.dispatcher = rig.dispatcher  # Redis is back
    assert intake.record()
    assert rig.app.sent == [TASK.id, TASK_B.id] and not intake.holds()
    assert not spool.path.exists()


def test_a_bug_while_recording_keeps_the_task_held(ledger: TaskLedger) -> None:
    rig = Rig(ledger)
    intake = Intake(SLOT, rig.dispatcher)

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    real, rig.dispatcher.accept = rig.dispatcher.accept, broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        intake.receive(TASK, epoch=1)
    assert intake.held_ids() == [TASK.id]
    rig.dispatcher.accept = real  # type: ignore[method-assign]
    assert intake.record() and state(ledger) == TaskState.QUEUED


def test_a_held_task_is_recorded_between_sessions(ledger: TaskLedger, tmp_path: Path) -> None:
    """The slot's thread retries what an outage held while it waits to reconnect, not at
    the next session's first tick."""
    rig = Rig(ledger)
    session = slot_session(ledger, rig, tmp_path, "http")
    session.intake.preload([TASK])
    assert not session._idle()  # a held task: a polling session asks for nothing more
    session._wait_recording(0)
    assert state(ledger) == TaskState.QUEUED and session._idle() is False  # in flight now
    assert not session.intake.holds()


def test_a_task_delivered_after_the_close_is_recorded_at_once(ledger: TaskLedger,
                                                              tmp_path: Path) -> None:
    """The WebSocket client's dispatch thread drains what arrived before a disconnect: a task
    handed over when the slot has no session (its frame came with the connection's close)
    is recorded then, not at the next session's first tick."""
    rig = Rig(ledger)
    session = slot_session(ledger, rig, tmp_path, "ws")
    assert session.coordinator is None  # no session: the slot's thread is not ticking
    session._on_task(TASK)
    assert state(ledger) == TaskState.QUEUED and rig.app.sent == [TASK.id]


def test_a_task_of_a_fork_not_held_is_answered_at_once_without_a_job(
        ledger: TaskLedger) -> None:
    """A coordinator that does not filter by fork (v4.4.70) hands this host another fork's
    task: answered at once with a deterministic failure naming the fork; no job, so no trace
    fetch and no proof under another fork's rules."""
    answer = GetTaskResponse(generation=Generation.H3, task_id=TASK.id, task_type=1,
                             task_data=json.dumps({"block_hashes": list(TASK.block_hashes)}),
                             uuid="u-1", hard_fork_name="darwinV2")
    task = to_task_msg(answer)
    rig = Rig(ledger)
    rig.dispatcher.forks = ("darwin",)
    rig.dispatcher.accept(SLOT, task, epoch=1)
    assert rig.app.sent == []
    rec = ledger.get(SLOT.name, task.id)
    assert rec is not None and rec.state == TaskState.PROVED and rec.proof is not None
    assert rec.proof.error == ("[deterministic] hard fork darwinV2 not held by this prover "
                               "(holds darwin)")
    held = Rig(ledger)
    held.dispatcher.forks = ("darwin", "darwinV2")
    other = replace(task, id="0x" + "ee" * 32)
    held.dispatcher.accept(SLOT, other, epoch=1)
    assert held.app.sent == [other.id]
