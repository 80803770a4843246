"""The ledger's state table against a real redis-server: every transition from every state,
allowed or refused, the assignment rule (duplicate vs. new assignment), and the memory rule
(what a final record keeps, and how long: roller.ledger.records)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from roller.config import SlotConfig
from roller.ledger import (
    FINAL_STATES,
    FROM_STATES,
    AssignResult,
    Moved,
    TaskLedger,
    TaskState,
)
from roller.ledger.records import slim_task
from roller.listener.reconcile import Reconciler
from roller.protocol.http_messages import task_generation
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
    assert ledger.prune(SLOT, now=time.time() + 601, window_seconds=60).forgotten == 1
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


# -- memory: what a final record keeps, and for how long (roller.ledger.records) ------------

WINDOW = 60.0
# A native proof's JSON is 178,150 bytes (native/: chunk, batch and bundle proofs are padded
# to one size): its proof field is 133,248 bytes, base64 in the JSON.
REAL_PROOF = AggProof(b"\x5a" * 133_248, b"i" * 216, b"f" * 64, b"v" * 32, 4)
BATCH = TaskMsg(id="0x" + "cd" * 32, type=1, block_hashes=(), sub_proofs=(REAL_PROOF,) * 3)
HTTP_BATCH = TaskMsg(
    id="0x" + "ef" * 32, type=1, block_hashes=(), sub_proofs=(REAL_PROOF,) * 3,
    http_task='{"generation":"http-h3","uuid":"u-1","task_id":"' + "0x" + "ef" * 32
              + '","task_type":2,"task_data":"' + "x" * 300_000
              + '","hard_fork_name":"darwin"}')


def deliver(ledger: TaskLedger, task: TaskMsg = TASK, *, notify: bool = True,
            detail: ProofDetail | None = None, to: TaskState = TaskState.DELIVERED) -> None:
    """A notification of `task` (unless `notify` is False: the record is in `received`
    already) taken through a job to the coordinator's answer `to`."""
    if notify:
        assert ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    assert ledger.mark_queued(SLOT, task.id).ok
    assert ledger.acquire_lease(SLOT, task.id, OWNER, 30)
    assert ledger.start_attempt(SLOT, task.id, OWNER, "w", "gpu0").started
    if detail is None:
        detail = ProofDetail(id=task.id, type=task.type, status=RespStatus.OK,
                             proof=REAL_PROOF, error="")
    assert ledger.store_proof(SLOT, detail, 1.0, owner=OWNER).ok
    ledger.release_lease(SLOT, task.id, OWNER)
    assert ledger.finish(SLOT, task.id, to, "outcome").ok


def raw(ledger: TaskLedger, task_id: str = TASK.id) -> dict[str, str]:
    return dict(ledger.r.hgetall(f"roller:task:{SLOT}:{task_id}"))


def record_bytes(ledger: TaskLedger, task_id: str) -> int:
    return int(ledger.r.memory_usage(f"roller:task:{SLOT}:{task_id}", samples=0))


def kept_ids(ledger: TaskLedger) -> list[str]:
    return list(ledger.r.zrange(f"roller:kept:{SLOT}", 0, -1))


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
@pytest.mark.parametrize("ok", [True, False])
def test_a_final_record_keeps_only_a_delivered_valid_proof(ledger: TaskLedger,
                                                           state: TaskState, ok: bool) -> None:
    """Failed, refused and expired records keep no answer at all; a delivered valid proof
    is kept (and indexed for the sweep) because a re-assignment may resubmit it."""
    if state == TaskState.EXPIRED:
        put_in(ledger, TaskState.PROVED, ok=ok)  # its answer waited in the outbox
        assert ledger.expire(SLOT, TASK.id, "window passed").ok
    else:
        put_in(ledger, state, ok=ok)
    fields = raw(ledger)
    kept = state == TaskState.DELIVERED and ok
    assert ("proof" in fields, "proof_ok" in fields) == (kept, kept)
    assert kept_ids(ledger) == ([TASK.id] if kept else [])
    assert ledger.r.ttl(f"roller:task:{SLOT}:{TASK.id}") > 0  # the record itself stays


@pytest.mark.parametrize("task", [BATCH, HTTP_BATCH], ids=["ws", "http"])
def test_the_close_cuts_the_task_body_to_what_names_the_task(ledger: TaskLedger,
                                                             task: TaskMsg) -> None:
    """A batch's body is megabytes of sub-proofs (twice on HTTP): none of it outlives the
    close; the record still reads back as the same task."""
    deliver(ledger, task)
    assert len(raw(ledger, task.id)["task"]) < 300
    rec = ledger.get(SLOT, task.id)
    assert rec is not None
    assert (rec.task.id, rec.task.type, rec.task.sub_proofs) == (task.id, 1, ())
    if task.http_task:
        assert task_generation(rec.task) == "http-h3"
        assert "task_data" not in rec.task.http_task and "uuid" not in rec.task.http_task
    # What is left is the kept proof (dropped a window later) and small fields.
    assert record_bytes(ledger, task.id) < 200_000


def test_a_delivered_proof_is_dropped_one_window_after_delivery(ledger: TaskLedger) -> None:
    deliver(ledger)
    delivered = float(raw(ledger)["finished_at"])
    within = ledger.prune(SLOT, now=delivered + WINDOW - 1, window_seconds=WINDOW)
    assert within.proofs_dropped == 0 and "proof" in raw(ledger)
    after = ledger.prune(SLOT, now=delivered + WINDOW + 1, window_seconds=WINDOW)
    assert (after.forgotten, after.proofs_dropped) == (0, 1)
    fields = raw(ledger)
    assert "proof" not in fields and "proof_ok" not in fields
    assert float(fields["proof_dropped_at"]) == delivered + WINDOW + 1
    assert fields["state"] == "delivered" and kept_ids(ledger) == []
    assert ledger.task_ids(SLOT) == [TASK.id]  # the small record stays for the retention
    assert ledger.prune(SLOT, now=delivered + WINDOW + 2, window_seconds=WINDOW
                        ).proofs_dropped == 0  # once


def test_a_reassignment_within_the_window_resubmits_the_kept_proof(ledger: TaskLedger
                                                                    ) -> None:
    deliver(ledger)
    again = ledger.assign(SLOT, TASK, epoch=2)
    assert (again.result, again.state) == (AssignResult.RESUBMIT, TaskState.PROVED)
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.proof is not None and rec.proof.proof == REAL_PROOF
    assert kept_ids(ledger) == []  # in flight: its proof is the outbox's, not the sweep's
    assert ledger.prune(SLOT, now=time.time() + 10 * WINDOW, window_seconds=WINDOW
                        ).proofs_dropped == 0
    assert ledger.get(SLOT, TASK.id).proof is not None  # type: ignore[union-attr]


def test_a_reassignment_after_the_proof_was_dropped_proves_again(ledger: TaskLedger) -> None:
    """Never a resubmission of nothing: the record goes back to `received`, its job is sent
    and its new proof delivered (and kept for its own window)."""
    deliver(ledger)
    delivered = float(raw(ledger)["finished_at"])
    assert ledger.prune(SLOT, now=delivered + WINDOW + 1, window_seconds=WINDOW
                        ).proofs_dropped == 1
    again = ledger.assign(SLOT, TASK, epoch=2)
    assert (again.result, again.state, again.assignment) == (
        AssignResult.REPROVE, TaskState.RECEIVED, 2)
    assert ledger.outbox_due(SLOT, time.time() + 1) == []
    assert "proof_dropped_at" not in raw(ledger)
    deliver(ledger, notify=False)  # its job proves it again, delivered again
    rec = ledger.get(SLOT, TASK.id)
    assert rec is not None and rec.proof is not None and rec.total_attempts == 2
    assert kept_ids(ledger) == [TASK.id]


def test_a_proof_delivered_again_is_kept_for_its_new_window(ledger: TaskLedger) -> None:
    """The sweep's compare-and-set: a proof resubmitted and delivered again after the first
    delivery counts its window from the second."""
    deliver(ledger)
    first = float(raw(ledger)["finished_at"])
    assert ledger.assign(SLOT, TASK, epoch=2).result is AssignResult.RESUBMIT
    time.sleep(0.05)
    assert ledger.finish(SLOT, TASK.id, TaskState.DELIVERED, "accepted").ok
    second = float(raw(ledger)["finished_at"])
    assert second > first
    cutoff_between = first + WINDOW + (second - first) / 2
    assert ledger.prune(SLOT, now=cutoff_between, window_seconds=WINDOW).proofs_dropped == 0
    assert "proof" in raw(ledger)
    assert ledger.prune(SLOT, now=second + WINDOW, window_seconds=WINDOW).proofs_dropped == 1


def test_a_kept_proof_without_its_body_is_proved_again(ledger: TaskLedger) -> None:
    """`proof_ok` alone never sends a record to the outbox with nothing to submit."""
    deliver(ledger)
    ledger.r.hdel(f"roller:task:{SLOT}:{TASK.id}", "proof")
    assert ledger.assign(SLOT, TASK, epoch=2).result is AssignResult.REPROVE


def test_one_sweep_drops_a_bounded_number_of_proofs(ledger: TaskLedger,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("roller.ledger.records.DROP_PER_SWEEP", 2)
    tasks = [TaskMsg(id=f"0x{n:064x}", type=0, block_hashes=TASK.block_hashes, sub_proofs=())
             for n in range(5)]
    for task in tasks:
        deliver(ledger, task)
    later = time.time() + WINDOW + 1
    assert [ledger.prune(SLOT, now=later, window_seconds=WINDOW).proofs_dropped
            for _ in range(4)] == [2, 2, 1, 0]
    assert all("proof" not in raw(ledger, t.id) for t in tasks)


def test_the_listener_sweep_drops_proofs_past_the_window(ledger: TaskLedger) -> None:
    deliver(ledger)
    reconciler = Reconciler(ledger, lambda _slot, _id: None, WINDOW)
    slot = SlotConfig(SLOT, "gpu0", 0, 0, Path("k.json"))
    delivered = float(raw(ledger)["finished_at"])
    reconciler.sweep(slot, now=delivered + WINDOW / 2)
    assert "proof" in raw(ledger)
    reconciler.sweep(slot, now=delivered + WINDOW + 1)
    assert "proof" not in raw(ledger)


def test_records_stay_small_after_the_window(ledger: TaskLedger) -> None:
    """Chunks, WS and HTTP batches, failures: whatever the task carried and answered, a final
    record past the window is about a kilobyte (1.1-1.4 KB measured), and Redis keeps a few
    KB a task, against the ~180 KB of a proof within the window."""
    for n in range(3):  # warm-up: the indexes' own allocations are not a task's
        deliver(ledger, TaskMsg(id=f"0x{n + 100:064x}", type=0, block_hashes=TASK.block_hashes,
                                sub_proofs=()))
    ledger.prune(SLOT, now=time.time() + WINDOW + 1, window_seconds=WINDOW)
    before = int(ledger.r.info("memory")["used_memory"])
    tasks = []
    for n in range(40):
        hashes = tuple(f"0x{n:032x}{b:032x}" for b in range(10))
        kind = (TaskMsg(id="", type=0, block_hashes=hashes, sub_proofs=())
                if n % 4 else [BATCH, HTTP_BATCH][n % 8 // 4])
        task = replace(kind, id=f"0x{n:064x}")
        failed = n % 10 == 9
        deliver(ledger, task, to=TaskState.FAILED if failed else TaskState.DELIVERED,
                detail=ProofDetail(id=task.id, type=task.type, status=RespStatus.ERROR,
                                   proof=None, error="x" * 500) if failed else None)
        tasks.append(task)
    peak = int(ledger.r.info("memory")["used_memory"])
    assert (peak - before) / len(tasks) > 100_000  # the kept proofs, within the window
    assert ledger.prune(SLOT, now=time.time() + WINDOW + 1, window_seconds=WINDOW
                        ).proofs_dropped == 36
    sizes = [record_bytes(ledger, t.id) for t in tasks]
    assert max(sizes) < 1600, sizes
    after = int(ledger.r.info("memory")["used_memory"])
    # The record, its index entries and the key's own overhead (about 2.5 KB measured).
    assert (after - before) / len(tasks) < 4096


def test_slim_task_keeps_what_names_the_task() -> None:
    assert json.loads(slim_task(BATCH.dumps())) == {"id": BATCH.id, "type": 1}
    assert TaskMsg.from_json(json.loads(slim_task(TASK.dumps()))) == TaskMsg(
        id=TASK.id, type=0, block_hashes=(), sub_proofs=())
    http = TaskMsg.from_json(json.loads(slim_task(HTTP_BATCH.dumps())))
    assert json.loads(http.http_task) == {"generation": "http-h3", "task_id": HTTP_BATCH.id,
                                          "task_type": 2}
    odd = TaskMsg(id="t", type=0, block_hashes=(), sub_proofs=(), http_task="not json")
    assert task_generation(TaskMsg.from_json(json.loads(slim_task(odd.dumps())))) == "http"
    assert slim_task("not json") == "" and slim_task("[1]") == ""
    # The same from any notification of the task id: another uuid, another task data.
    other = HTTP_BATCH.http_task.replace("u-1", "u-2").replace('"x', '"y')
    assert slim_task(HTTP_BATCH.dumps()) == slim_task(
        TaskMsg(id=HTTP_BATCH.id, type=1, block_hashes=(), sub_proofs=(),
                http_task=other).dumps())


def test_migrate_slims_the_records_of_earlier_releases(ledger: TaskLedger) -> None:
    """Final records closed before records were slim keep their bodies and answers: the
    listener's start makes them slim, once."""
    r = ledger.r
    old = time.time() - 2 * WINDOW
    answers = {"a": ("delivered", "1"), "b": ("failed", "0"), "c": ("refused", "1")}
    for task_id, (state, ok) in answers.items():
        task = TaskMsg(id=task_id, type=1, block_hashes=(), sub_proofs=(REAL_PROOF,) * 2)
        r.hset(f"roller:task:{SLOT}:{task_id}", mapping={
            "task": task.dumps(), "state": state, "finished_at": repr(old),
            "proof": ProofDetail(id=task_id, type=1, status=0, proof=REAL_PROOF,
                                 error="").dumps(), "proof_ok": ok})
        r.zadd(f"roller:done:{SLOT}", {task_id: old})
    put_in(ledger, TaskState.PROVED)  # in flight: never touched
    assert ledger.migrate([SLOT]) == 0
    assert all(len(raw(ledger, t)["task"]) < 100 for t in answers)
    assert ["proof" in raw(ledger, t) for t in answers] == [True, False, False]
    assert kept_ids(ledger) == ["a"]
    assert ledger.get(SLOT, TASK.id).proof is not None  # type: ignore[union-attr]
    assert ledger.prune(SLOT, window_seconds=WINDOW).proofs_dropped == 1  # delivered long ago
    assert ledger.slim_closed(SLOT) == 0  # once per slot
