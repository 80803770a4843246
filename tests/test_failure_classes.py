"""Failure classes (issue 22 item 6): every failure answer is `deterministic` (the same input
fails the same way on this prover: reported once, remembered for the identity, a
re-assignment answered at once without a job) or `transient` (may pass later: proved again
on the next assignment, under `retry.max_task_attempts`). The class rides in the report's
text as a prefix; nothing else of the wire message changes.

Unit tests class each error source; the job and listener tests run against a real Redis with
the mock prover."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_listener_units import SLOT, FlakyCelery
from test_trace_client import FakeClock, FakeResponse, block_hash, scripted

from roller.config import RetryConfig, parse_config
from roller.errors import (
    ProverError,
    TraceFetchError,
    TraceMismatch,
    WireFormatError,
    WorkerUnusable,
)
from roller.ffi.mock import MockProver
from roller.ledger import UNPROVABLE_TTL_SECONDS, AssignResult, TaskLedger, TaskState
from roller.lifecycle.failures import (
    BUDGET_SPENT,
    PROVING_PANIC,
    TRACES_FAILED,
    classify,
    failure,
    input_rejected,
)
from roller.listener import Dispatcher
from roller.protocol.encoding import go_dumps
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.http_messages import (
    GetTaskResponse,
    SubmitProofRequest,
    from_task_msg,
    task_data_error,
    to_task_msg,
)
from roller.protocol.messages import FailureClass, ProofDetail, RespStatus, TaskMsg
from roller.protocol.session import HttpCoordinatorSession, submit_request
from roller.worker.job import JobContext, JobOutcome, run_job
from roller.worker.trace_client import TraceClient

DET, TRANS = FailureClass.DETERMINISTIC, FailureClass.TRANSIENT
BATCH_ID = "0x" + "bb" * 32
CHUNK = TaskMsg(id="0x" + "cd" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())


def _batch_task(chunk_proofs: list[object], gen: Generation = Generation.H3,
                uuid: str = "u-1") -> GetTaskResponse:
    return GetTaskResponse(gen, BATCH_ID, TaskType.BATCH,
                           go_dumps({"chunk_infos": [], "chunk_proofs": chunk_proofs}),
                           uuid=uuid)


# -- the class in the report's text, and nothing else on the wire ------------------------------

@pytest.mark.unit
def test_the_class_is_a_stable_prefix_read_back_from_the_stored_answer() -> None:
    detail = failure(CHUNK, DET, "chunk proof 0 invalid: AggProof: final_pair missing")
    assert detail.error == "[deterministic] chunk proof 0 invalid: AggProof: final_pair missing"
    assert detail.failure_class is DET and detail.status == RespStatus.ERROR
    # What the ledger stores is the answer's JSON: the class survives it.
    assert ProofDetail.loads(detail.dumps()).failure_class is DET
    assert failure(CHUNK, TRANS, TRACES_FAILED).error == "[transient] get traces failed"
    # A remembered report is sent again byte for byte; a text without a mark is transient.
    assert failure(CHUNK, DET, detail.error).error == detail.error
    assert FailureClass.of("prover panicked") is TRANS
    ok = ProofDetail(id=CHUNK.id, type=0, status=RespStatus.OK, proof=None, error="")
    assert ok.failure_class is None


@pytest.mark.unit
def test_a_classed_failure_report_keeps_its_wire_shape() -> None:
    """Spec 6.1/6.3: the same members in the same order as before; only failure_msg's text
    carries the mark."""
    task = to_task_msg(_batch_task([]))
    detail = failure(task, DET, "batch of 0 chunks")
    request = submit_request(detail, task)
    plain = SubmitProofRequest.failure(from_task_msg(task), "batch of 0 chunks")
    assert list(request.to_json()) == list(plain.to_json())
    assert request.to_json() == {**plain.to_json(),
                                 "failure_msg": "[deterministic] batch of 0 chunks"}


# -- each error source ---------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize(("message", "cls"), [
    # The native prover refusing its input (native/src): deterministic.
    ("chunk proof 0 invalid: AggProof: final_pair missing", DET),
    ("batch proof 1 invalid: proof bytes: bad frame", DET),
    ("chunk_proofs_json: expected a non-empty JSON array of AggProof", DET),
    ("batch of 0 chunks", DET),
    ("chunk proofs not in chain order: chunk 0 post state root 0x1 != chunk 1 prev state "
     "root 0x2; a gap", DET),
    ("chain_id differs between chunk proofs 0 and 1 (1 vs 2)", DET),
    ("chain_id: traces say 1, the task/configuration says 534352", DET),
    ("traces not contiguous: block 3 rootBefore differs from block 2 stateRoot", DET),
    ("traces out of order: block 5 follows block 3 (need consecutive block numbers)", DET),
    ("empty chunk: no block traces", DET),
    ("chunk too large: 9 blocks (1..=9) encode to 99 bytes, over the largest chunk circuit "
     "capacity of 9 bytes (only the first 1 blocks would fit); split the chunk", DET),
    ("bundle of 99 batch proofs exceeds the maximum of 45 per bundle proof; split the bundle",
     DET),
    ("batch proof 0 invalid: block_count does not match the proof's public inputs", DET),
    ("trace 0: header.number: bad hex \"0xzz\"", DET),
    ("batch proofs are not supported by the seed-era prover ABI", DET),
    # The prover failing for its own reasons, or a text no rule knows: transient.
    ("chunk proving failed: conflicting witness", TRANS),
    ("prover panic: index out of bounds", TRANS),
    ("chunk proof 0 invalid: prover panic: attempt to subtract with overflow", TRANS),
    ("batch prover not initialised", TRANS),
    ("gen_batch_proof failed without a message", TRANS),
    ("gen_chunk_proof returned invalid JSON: Expecting value", TRANS),
    ("internal error: batch commitment mismatch", TRANS),
    ("proof does not verify", TRANS),
    ("unexpected end of JSON input", TRANS),
    ("CUDA error: an illegal memory access was encountered", TRANS),
    ("", TRANS),
])
def test_prover_errors_are_classed_by_what_the_prover_says(message: str,
                                                           cls: FailureClass) -> None:
    assert classify(ProverError(message)) is cls
    assert input_rejected(message) is (cls is DET)


@pytest.mark.unit
def test_l2_node_errors_are_transient() -> None:
    clock = FakeClock()
    client, _ = scripted(clock, *[FakeResponse(429, headers={"Retry-After": "30"})] * 10,
                         budget_seconds=100)
    with pytest.raises(TraceFetchError) as limited:  # rate limited past the trace budget
        client.get_traces([block_hash(1)])
    assert classify(limited.value) is TRANS
    assert classify(TraceFetchError("L2 node answered HTTP 502 for blocks 0x1")) is TRANS
    # Traces of other blocks than asked: a lagging node, which serves the right ones later.
    assert classify(TraceMismatch("0x" + "11" * 32, "the node answered block 0x22")) is TRANS


@pytest.mark.unit
def test_worker_faults_timeouts_and_unknown_errors_are_transient() -> None:
    assert classify(WorkerUnusable("prover warm-up failed: CUDA_ERROR_NO_DEVICE")) is TRANS
    assert classify(TimeoutError("timed out")) is TRANS
    assert classify(RuntimeError("something new")) is TRANS
    assert FailureClass.of(PROVING_PANIC) is TRANS


@pytest.mark.unit
def test_sub_proofs_that_do_not_decode_are_deterministic() -> None:
    """A batch whose chunk proofs are not the generation's shape: the session keeps the task
    (so that it is answered, not left assigned until the coordinator's timeout), without
    sub-proofs, and the decoder's reason names the field."""
    answer = _batch_task([{"proof": "not base64!"}])
    with pytest.raises(WireFormatError) as exc:
        to_task_msg(answer)
    assert classify(exc.value) is DET
    task = to_task_msg(answer, keep_undecodable=True)
    assert (task.id, task.type, task.sub_proofs) == (BATCH_ID, 1, ())
    reason = task_data_error(task)
    assert reason is not None and "task_data.chunk_proofs[0].proof" in reason
    assert task_data_error(to_task_msg(_batch_task([]))) is None  # decodes (empty is the
    assert task_data_error(CHUNK) is None  # prover's to refuse); a WS task has no task data


# -- the job: classes stored, deterministic ones remembered for the identity -----------------

def _ctx(tmp_path: Path, redis_url: str, prover: MockProver) -> JobContext:
    cfg = parse_config({
        "roller_name": "slot0", "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": "http://127.0.0.1:1", "trace_endpoint": "http://127.0.0.1:1",
        "broker_url": redis_url}, tmp_path, env={})
    return JobContext(cfg=cfg, ledger=TaskLedger.from_url(redis_url), prover=prover,
                      traces=TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01),
                      worker="test")


def _stored(ctx: JobContext, task: TaskMsg) -> ProofDetail:
    assert ctx.ledger.assign("slot0", task, epoch=1).result is AssignResult.NEW
    assert run_job(ctx, "slot0", task.id) is JobOutcome.STORED
    rec = ctx.ledger.get("slot0", task.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.proof is not None
    return rec.proof


def test_a_task_the_prover_refuses_is_remembered_for_the_identity(
        tmp_path: Path, redis_url: str) -> None:
    prover = MockProver()
    ctx = _ctx(tmp_path, redis_url, prover)
    garbage = [{"proof": None, "instances": "AQI=", "vk": None}]  # decodes; the prover refuses
    answer = _stored(ctx, to_task_msg(_batch_task(garbage)))
    assert answer.failure_class is DET and answer.error.startswith("[deterministic] ")
    assert ctx.ledger.unprovable("slot0", BATCH_ID) == answer.error
    ttl = ctx.ledger.r.ttl(f"roller:unprovable:slot0:{BATCH_ID}")
    assert UNPROVABLE_TTL_SECONDS - 5 <= ttl <= UNPROVABLE_TTL_SECONDS
    assert ctx.ledger.unprovable("other-slot", BATCH_ID) is None  # per identity


def test_undecodable_sub_proofs_are_answered_without_proving(
        tmp_path: Path, redis_url: str) -> None:
    prover = MockProver()
    ctx = _ctx(tmp_path, redis_url, prover)
    task = to_task_msg(_batch_task([{"proof": "not base64!"}]), keep_undecodable=True)
    answer = _stored(ctx, task)
    assert answer.failure_class is DET and "task_data.chunk_proofs[0].proof" in answer.error
    assert prover.calls == []
    assert ctx.ledger.unprovable("slot0", BATCH_ID) == answer.error


def test_a_transient_failure_is_not_remembered(tmp_path: Path, redis_url: str) -> None:
    ctx = _ctx(tmp_path, redis_url, MockProver())  # its L2 node refuses connections
    answer = _stored(ctx, CHUNK)
    assert answer.error == "[transient] get traces failed"
    assert ctx.ledger.unprovable("slot0", CHUNK.id) is None


# -- the listener: re-assignments answered at once, with no job -------------------------------

def _finish_failed(ledger: TaskLedger, task: TaskMsg) -> None:
    """The task's answer delivered as a failure report the coordinator took."""
    owner = "w:1"
    assert ledger.acquire_lease(SLOT.name, task.id, owner, 30)
    assert ledger.start_attempt(SLOT.name, task.id, owner, "w", "gpu0").started
    detail = failure(task, TRANS, TRACES_FAILED)
    assert ledger.store_proof(SLOT.name, detail, None, owner=owner).ok
    assert ledger.release_lease(SLOT.name, task.id, owner)
    assert ledger.finish(SLOT.name, task.id, TaskState.FAILED, "reported").ok


def test_a_remembered_task_handed_back_is_answered_at_once_without_a_job(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    ledger = TaskLedger.from_url(redis_url)
    app, woken = FlakyCelery(), []
    dispatcher = Dispatcher(app, ledger, woken.append)  # type: ignore[arg-type]
    assert dispatcher.accept(SLOT, CHUNK, epoch=1) is AssignResult.NEW
    assert app.sent == [CHUNK.id]
    _finish_failed(ledger, CHUNK)
    report = "[deterministic] traces not contiguous: block 3 rootBefore differs"
    ledger.remember_unprovable(SLOT.name, CHUNK.id, report)
    with caplog.at_level(logging.INFO, logger="roller.listener"):
        assert dispatcher.accept(SLOT, CHUNK, epoch=1) is AssignResult.REPROVE
    assert app.sent == [CHUNK.id]  # no second job
    rec = ledger.get(SLOT.name, CHUNK.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.proof is not None
    assert rec.proof.error == report and rec.total_attempts == 1
    assert ledger.outbox_due(SLOT.name) == [CHUNK.id] and woken == [SLOT.name]
    [line] = [r.getMessage() for r in caplog.records if "at once" in r.getMessage()]
    assert f"task_id={CHUNK.id}" in line and f"slot={SLOT.name}" in line
    assert "traces not contiguous" in line


def _http_chunk(uuid: str) -> TaskMsg:
    """One H3 assignment of the same chunk: every re-dispatch has its own uuid."""
    return to_task_msg(GetTaskResponse(Generation.H3, CHUNK.id, TaskType.CHUNK, go_dumps(
        {"block_hashes": list(CHUNK.block_hashes)}), uuid=uuid))


def test_a_task_whose_attempt_budget_is_spent_is_answered_at_once(redis_url: str) -> None:
    """`retry.max_task_attempts` (4) below the coordinator's `session_attempts` (5), across
    re-assignments under new uuids (one record per task id): the assignment after the
    roller's fourth attempt gets a failure report on its own uuid, not a fifth proof."""
    ledger = TaskLedger.from_url(redis_url)
    app = FlakyCelery()
    dispatcher = Dispatcher(app, ledger, lambda _slot: None)  # type: ignore[arg-type]
    budget = RetryConfig().max_task_attempts
    assert budget == 4 < 5
    for n in range(1, budget + 1):  # four assignments, each proved once and failed
        dispatcher.accept(SLOT, _http_chunk(f"u-{n}"), epoch=1)
        assert len(app.sent) == n
        _finish_failed(ledger, CHUNK)
    assert dispatcher.accept(SLOT, _http_chunk("u-5"), epoch=1) is AssignResult.REPROVE
    assert len(app.sent) == budget
    rec = ledger.get(SLOT.name, CHUNK.id)
    assert rec is not None and rec.proof is not None and rec.total_attempts == budget
    assert rec.proof.error == f"[transient] {BUDGET_SPENT}: 4 of 4 attempts"
    assert rec.state is TaskState.PROVED and rec.assignment == budget + 1
    assert submit_request(rec.proof, rec.task).uuid == "u-5"  # the current assignment


@pytest.mark.unit
def test_the_session_keeps_a_task_whose_data_does_not_decode() -> None:
    """The key holds the assignment until it is answered: the poll hands the task on (to be
    recorded and answered with a deterministic report) instead of dropping it."""

    class OneBadBatch:
        generation = Generation.H3

        def get_task(self, task_types: object, height: int) -> GetTaskResponse:
            return _batch_task([{"proof": "not base64!"}])

    session = HttpCoordinatorSession(OneBadBatch(),  # type: ignore[arg-type]
                                     slot="batch-0", task_types=(TaskType.BATCH,),
                                     prover_height=lambda: 1)
    got: list[TaskMsg] = []
    session._poll_once(got.append)
    [task] = got
    assert task.id == BATCH_ID and task.sub_proofs == () and task_data_error(task)


def test_answer_now_takes_a_failure_for_a_received_record_only(redis_url: str) -> None:
    ledger = TaskLedger.from_url(redis_url)
    ledger.assign(SLOT.name, CHUNK, epoch=1)
    ok = ProofDetail(id=CHUNK.id, type=0, status=RespStatus.OK, proof=None, error="")
    with pytest.raises(ValueError, match=f"task {CHUNK.id} of slot {SLOT.name}"):
        ledger.answer_now(SLOT.name, ok)
    assert ledger.mark_queued(SLOT.name, CHUNK.id).ok  # its job is out
    moved = ledger.answer_now(SLOT.name, failure(CHUNK, DET, "x"))
    assert not moved.ok and moved.state is TaskState.QUEUED
    assert json.loads(ledger.r.hget(f"roller:task:{SLOT.name}:{CHUNK.id}", "task"))
