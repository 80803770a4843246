"""The ledger's state table against a real redis-server: every transition from every state,
allowed or refused, and the assignment rule (duplicate vs. new assignment)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from roller.ledger import (
    FINAL_STATES,
    FROM_STATES,
    AssignResult,
    Moved,
    TaskLedger,
    TaskState,
)
from roller.protocol.messages import AggProof, ProofDetail, RespStatus, TaskMsg

SLOT = "slot0"
OWNER = "host:1:job"
TASK = TaskMsg(id="0x" + "ab" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())


def proof(ok: bool = True) -> ProofDetail:
    if not ok:
        return ProofDetail(id=TASK.id, type=0, status=RespStatus.ERROR, proof=None,
                           error="zk proving panic")
    return ProofDetail(id=TASK.id, type=0, status=RespStatus.OK,
                       proof=AggProof(b"p" * 32, b"i", b"f" * 32, b"v", 1), error="")


@pytest.fixture
def ledger(redis_url: str) -> TaskLedger:
    return TaskLedger.from_url(redis_url, retention_seconds=600)


def put_in(ledger: TaskLedger, state: TaskState, ok: bool = True) -> None:
    """Drive a fresh record to `state` through the allowed transitions only."""
    assert ledger.assign(SLOT, TASK, epoch=1).result is AssignResult.NEW
    if state == TaskState.RECEIVED:
        return
    if state == TaskState.EXPIRED:
        assert ledger.expire(SLOT, TASK.id, "window").ok
        return
    assert ledger.mark_queued(SLOT, TASK.id).ok
    if state == TaskState.QUEUED:
        return
    assert ledger.acquire_lease(SLOT, TASK.id, OWNER, 30)
    assert ledger.start_attempt(SLOT, TASK.id, OWNER, "w", "gpu0").started
    if state == TaskState.PROVING:
        ledger.release_lease(SLOT, TASK.id, OWNER)
        return
    assert ledger.store_proof(SLOT, proof(ok), 1.0, owner=OWNER).ok
    ledger.release_lease(SLOT, TASK.id, OWNER)
    if state != TaskState.PROVED:
        assert ledger.finish(SLOT, TASK.id, state, "outcome").ok
    assert ledger.get(SLOT, TASK.id).state == state  # type: ignore[union-attr]


def attempt(ledger: TaskLedger) -> Moved:
    ledger.acquire_lease(SLOT, TASK.id, OWNER, 30)
    started = ledger.start_attempt(SLOT, TASK.id, OWNER, "w", "gpu0")
    return Moved(started.started, started.state)


TRANSITIONS: dict[str, tuple[TaskState, Callable[[TaskLedger], Moved]]] = {
    "mark_queued": (TaskState.QUEUED, lambda lg: lg.mark_queued(SLOT, TASK.id)),
    "requeue": (TaskState.RECEIVED, lambda lg: lg.requeue(SLOT, TASK.id)),
    "start_attempt": (TaskState.PROVING, attempt),
    "store_proof": (TaskState.PROVED, lambda lg: lg.store_proof(SLOT, proof(), 2.0, owner=OWNER)),
    "finish": (TaskState.DELIVERED,
               lambda lg: lg.finish(SLOT, TASK.id, TaskState.DELIVERED, "accepted")),
    "expire": (TaskState.EXPIRED, lambda lg: lg.expire(SLOT, TASK.id, "window passed")),
    "answer_now": (TaskState.PROVED, lambda lg: lg.answer_now(
        SLOT, ProofDetail(id=TASK.id, type=TASK.type, status=RespStatus.ERROR,
                          proof=None, error="[deterministic] no"))),
}


@pytest.mark.parametrize("op", sorted(TRANSITIONS))
@pytest.mark.parametrize("start", list(TaskState))
def test_every_transition_from_every_state(ledger: TaskLedger, op: str, start: TaskState
                                           ) -> None:
    put_in(ledger, start)
    to, call = TRANSITIONS[op]
    allowed = start in FROM_STATES[op]
    moved = call(ledger)
    assert moved.ok is allowed, f"{op} from {start}"
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None
    assert rec.state == (to if allowed else start)
    assert moved.state == rec.state
    live = TASK.id in ledger.live_ids(SLOT)
    assert live is (rec.state not in FINAL_STATES)
    in_outbox = TASK.id in ledger.outbox_due(SLOT, time.time() + 1)
    assert in_outbox is (rec.state == TaskState.PROVED)


@pytest.mark.parametrize("op", sorted(TRANSITIONS))
def test_no_transition_creates_a_record(ledger: TaskLedger, op: str) -> None:
    moved = TRANSITIONS[op][1](ledger)
    assert moved == Moved(False, None)
    assert ledger.get(SLOT, TASK.id) is None


def test_requeue_refused_while_a_lease_is_live(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.PROVING)
    assert ledger.acquire_lease(SLOT, TASK.id, OWNER, 30)
    assert ledger.requeue(SLOT, TASK.id) == Moved(False, TaskState.PROVING)
    ledger.release_lease(SLOT, TASK.id, OWNER)
    assert ledger.requeue(SLOT, TASK.id) == Moved(True, TaskState.RECEIVED)


def test_start_attempt_needs_the_lease(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.QUEUED)
    refused = ledger.start_attempt(SLOT, TASK.id, OWNER, "w", "gpu0")
    assert not refused.started and refused.state == TaskState.QUEUED
    assert ledger.acquire_lease(SLOT, TASK.id, "host:2:other", 30)
    assert not ledger.start_attempt(SLOT, TASK.id, OWNER, "w", "gpu0").started


def test_finish_takes_only_submission_outcomes(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.PROVED)
    with pytest.raises(ValueError, match="not a submission outcome"):
        ledger.finish(SLOT, TASK.id, TaskState.EXPIRED, "x")


# -- the assignment rule ---------------------------------------------------------------------

@pytest.mark.parametrize("state", sorted(set(TaskState) - FINAL_STATES))
def test_same_registration_in_flight_is_a_duplicate(ledger: TaskLedger, state: TaskState
                                                    ) -> None:
    put_in(ledger, state)
    again = ledger.assign(SLOT, TASK, epoch=1)
    want = AssignResult.UNSENT if state == TaskState.RECEIVED else AssignResult.IN_FLIGHT
    assert (again.result, again.state, again.assignment) == (want, state, 1)


@pytest.mark.parametrize("state", sorted(set(TaskState) - FINAL_STATES))
def test_after_a_new_registration_in_flight_is_carried(ledger: TaskLedger, state: TaskState
                                                       ) -> None:
    put_in(ledger, state)
    again = ledger.assign(SLOT, TASK, epoch=2)
    assert (again.result, again.state, again.assignment) == (AssignResult.CARRIED, state, 2)
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.attempts == 0  # a fresh budget for the new assignment
    assert ledger.assign(SLOT, TASK, epoch=2).result in (AssignResult.IN_FLIGHT,
                                                         AssignResult.UNSENT)


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
@pytest.mark.parametrize("ok", [True, False])
def test_final_record_is_a_new_assignment(ledger: TaskLedger, state: TaskState, ok: bool
                                          ) -> None:
    if state == TaskState.EXPIRED and not ok:
        pytest.skip("an expired record never proved has no proof either way")
    put_in(ledger, state, ok=ok)
    again = ledger.assign(SLOT, TASK, epoch=1)  # even in the same registration
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.assignment == 2 and rec.attempts == 0
    assert TASK.id in ledger.live_ids(SLOT)
    assert ledger.r.ttl(f"roller:task:{SLOT}:{TASK.id}") == -1  # no longer expiring
    kept = ok and state == TaskState.DELIVERED
    if kept:  # a valid proof the coordinator took is resubmitted, not proved again
        assert (again.result, again.state) == (AssignResult.RESUBMIT, TaskState.PROVED)
        assert rec.proof == proof() and TASK.id in ledger.outbox_due(SLOT)
    else:  # refused, reported as failed, or never delivered: proved again
        assert (again.result, again.state) == (AssignResult.REPROVE, TaskState.RECEIVED)
        assert rec.proof is None and ledger.outbox_due(SLOT) == []
    assert rec.total_attempts == (0 if state == TaskState.EXPIRED else 1)


def test_final_records_expire_after_the_retention(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.DELIVERED)
    key = f"roller:task:{SLOT}:{TASK.id}"
    assert 590 <= ledger.r.ttl(key) <= 600
    assert ledger.live_ids(SLOT) == [] and ledger.task_ids(SLOT) == [TASK.id]
    assert ledger.prune(SLOT, now=time.time() + 601) == 1
    assert ledger.task_ids(SLOT) == []


def test_note_never_revives_an_expired_record(ledger: TaskLedger) -> None:
    ledger.note(SLOT, TASK.id, prove_started_at=1.0)
    assert ledger.r.exists(f"roller:task:{SLOT}:{TASK.id}") == 0
    with pytest.raises(ValueError):
        ledger.note(SLOT, TASK.id, state="proved")


def test_lease_renew_and_release_only_by_the_owner(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.QUEUED)
    assert ledger.acquire_lease(SLOT, TASK.id, OWNER, 30)
    assert not ledger.acquire_lease(SLOT, TASK.id, "otherhost:2:x", 30)
    assert ledger.retake_lease(SLOT, TASK.id, "otherhost:2:x", 30) == 0
    assert not ledger.release_lease(SLOT, TASK.id, "otherhost:2:x")
    assert ledger.retake_lease(SLOT, TASK.id, OWNER, 30) == 1  # renewed
    assert ledger.release_lease(SLOT, TASK.id, OWNER)
    assert not ledger.leased(SLOT, TASK.id)


def test_a_lost_lease_is_taken_back_only_by_its_own_attempt(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.PROVING)  # OWNER's attempt; its lease ran out (released)
    other = "otherhost:2:x"
    assert ledger.retake_lease(SLOT, TASK.id, other, 30) == 0  # not its attempt
    assert ledger.retake_lease(SLOT, TASK.id, OWNER, 30) == 2  # taken back
    assert ledger.leased(SLOT, TASK.id)
    # Re-driven, its new job still waiting in the queue: no other attempt, taken back.
    ledger.release_lease(SLOT, TASK.id, OWNER)
    assert ledger.requeue(SLOT, TASK.id).ok
    assert ledger.mark_queued(SLOT, TASK.id).ok
    assert ledger.retake_lease(SLOT, TASK.id, OWNER, 30) == 2
    assert ledger.get(SLOT, TASK.id).state is TaskState.PROVING  # type: ignore[union-attr]
    # Another attempt started meanwhile (the record was re-driven): the first stores nothing.
    ledger.release_lease(SLOT, TASK.id, OWNER)
    assert ledger.requeue(SLOT, TASK.id).ok
    assert ledger.acquire_lease(SLOT, TASK.id, other, 30)
    assert ledger.start_attempt(SLOT, TASK.id, other, "w2", "gpu0").started
    assert ledger.retake_lease(SLOT, TASK.id, OWNER, 30) == 0
    assert ledger.store_proof(SLOT, proof(), 1.0, owner=OWNER) == Moved(False, TaskState.PROVING)
    assert ledger.store_proof(SLOT, proof(), 1.0, owner=other).ok


def test_store_refused_while_another_owner_holds_the_lease(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.PROVING)
    ledger.r.set(f"roller:lock:{SLOT}:{TASK.id}", "intruder")
    assert not ledger.store_proof(SLOT, proof(), 1.0, owner=OWNER).ok


def test_each_send_gets_the_next_drive(ledger: TaskLedger) -> None:
    assert ledger.begin_send(SLOT, TASK.id) == 0  # no record: nothing to send
    put_in(ledger, TaskState.RECEIVED)
    assert [ledger.begin_send(SLOT, TASK.id) for _ in range(2)] == [1, 2]
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.drive == 2
    assert [row.drive for row in ledger.live_rows(SLOT)] == [2]


def test_store_wakes_the_listener(ledger: TaskLedger) -> None:
    put_in(ledger, TaskState.PROVED)
    assert ledger.wait_proved(1) == (SLOT, TASK.id)
    assert ledger.wait_proved(0.05) is None


def test_migrate_indexes_a_first_release_ledger(ledger: TaskLedger) -> None:
    r = ledger.r
    for task_id, state in (("a", "proving"), ("b", "delivered")):
        r.hset(f"roller:task:{SLOT}:{task_id}", mapping={"task": TASK.dumps(), "state": state})
        r.zadd(f"roller:tasks:{SLOT}", {task_id: 1.0})
    r.zadd("roller:outbox", {f"{SLOT}|a": 5.0})
    assert ledger.migrate([SLOT]) == 2
    assert ledger.live_ids(SLOT) == ["a"] and ledger.task_ids(SLOT) == ["a", "b"]
    assert ledger.outbox_due(SLOT, 10.0) == ["a"]
    assert not r.exists("roller:outbox") and not r.exists(f"roller:tasks:{SLOT}")


def test_the_latest_notification_names_the_assignment(ledger: TaskLedger) -> None:
    """HTTP H2+ re-dispatch a task under a new uuid: one record per task, whose recorded
    task (what the submission names) is always the latest notification."""
    first = TaskMsg(id=TASK.id, type=0, block_hashes=TASK.block_hashes, sub_proofs=(),
                    http_task='{"uuid":"a"}')
    second = TaskMsg(id=TASK.id, type=0, block_hashes=TASK.block_hashes, sub_proofs=(),
                     http_task='{"uuid":"b"}')
    assert ledger.assign(SLOT, first, epoch=1).result is AssignResult.NEW
    assert ledger.assign(SLOT, second, epoch=2).result is AssignResult.CARRIED  # in flight
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.task == second
    assert ledger.mark_queued(SLOT, TASK.id).ok
    assert ledger.acquire_lease(SLOT, TASK.id, OWNER, 30)
    assert ledger.start_attempt(SLOT, TASK.id, OWNER, "w", "gpu0").started
    assert ledger.store_proof(SLOT, proof(), 1.0, owner=OWNER).ok
    assert ledger.finish(SLOT, TASK.id, TaskState.DELIVERED, "accepted").ok
    # Re-dispatched after it was taken (an operator's reset): the kept proof goes to the
    # new assignment, not proved again.
    again = ledger.assign(SLOT, first, epoch=2)
    assert (again.result, again.state) == (AssignResult.RESUBMIT, TaskState.PROVED)
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.task == first and rec.proof == proof()
