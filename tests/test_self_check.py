"""Check before store (issue 31 item 6): a worker verifies each proof against its task before
storing it. A proof that fails is never stored: it is counted, logged and proved again within
the attempt budget; a job whose every proof fails answers a transient failure report; a run of
failing proofs fences the GPU (roller.worker.gpu_guard). The mock prover stands in for a GPU
that corrupts its output (CorruptingProver); the native one is checked in
tests/faults/test_fault_self_check.py."""

from __future__ import annotations

import base64
import json
import logging
import queue
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from prometheus_client import REGISTRY

from roller.config import RollerConfig, parse_config
from roller.devnet.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.errors import ProverError
from roller.ffi.mock import MockProver
from roller.ffi.native import SeedProver
from roller.forks import PRE_FORK
from roller.ledger import AssignResult, TaskLedger, TaskState
from roller.lifecycle import Observers
from roller.listener.submitter import Submitter
from roller.observe import metrics
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.messages import AggProof, FailureClass, ProveType, TaskMsg
from roller.protocol.session import WsCoordinatorSession
from roller.worker import gpu_guard
from roller.worker.gpu_guard import SELF_CHECK_FENCE_NOTE, GpuGuard, SelfCheckStreak
from roller.worker.job import SELF_CHECK_FAILED, JobContext, JobOutcome, run_job
from roller.worker.trace_client import TraceClient

SLOT = "slot-sc"
BLOCKS = ["0xc7b6c7022c8386cdaf6fcd3d4f8d03dce257ae3664a072fdce511ecefce73ad0",
          "0x13ddd94de9c585c50c6885d4ef649292c2624ae7c8fc73781ee8785f2564b44c"]
# What a failing mock proof is told (the Prover protocol's verdict carries no reason).
REJECTED = FailureClass.TRANSIENT.reason(f"{SELF_CHECK_FAILED}: proof does not verify")


class CorruptingProver(MockProver):
    """A GPU with silent data corruption: the first `bad` proofs (every one with None) come
    back with one bit of their proof bytes flipped, in shape, with no error."""

    def __init__(self, bad: int | None = None) -> None:
        super().__init__()
        self.bad = bad
        self.made = 0
        self.checks: list[tuple[str, str]] = []  # (kind, the task's infos) per check

    def _corrupt(self, proof_json: str) -> str:
        self.made += 1
        if self.bad is not None and self.made > self.bad:
            return proof_json
        proof = json.loads(proof_json)
        raw = bytearray(base64.b64decode(proof["proof"]))
        raw[len(raw) // 2] ^= 0x01
        proof["proof"] = base64.b64encode(bytes(raw)).decode()
        return json.dumps(proof)

    def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
        return self._corrupt(super().gen_chunk_proof(traces_json, fork))

    def gen_batch_proof(self, chunk_proofs_json: str, fork: str = PRE_FORK) -> str:
        return self._corrupt(super().gen_batch_proof(chunk_proofs_json, fork))

    def verify_chunk_proof(self, proof_json: str, chunk_info_json: str | None = None,
                           fork: str = PRE_FORK) -> bool:
        self.checks.append(("chunk", chunk_info_json or ""))
        return super().verify_chunk_proof(proof_json, chunk_info_json, fork)

    def verify_batch_proof(self, proof_json: str, chunk_infos_json: str | None = None,
                           fork: str = PRE_FORK) -> bool:
        self.checks.append(("batch", chunk_infos_json or ""))
        return super().verify_batch_proof(proof_json, chunk_infos_json, fork)


@pytest.fixture
def devnet() -> Iterator[Devnet]:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                trace_dir=DATA_DIR / "traces", chunk_tasks=False,
                dispatch_interval=0.05) as net:
        yield net


@pytest.fixture
def account() -> LocalAccount:
    return Account.create()


class Fence:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, why: str) -> None:
        self.calls.append(why)


def make_ctx(tmp_path: Path, devnet: Devnet, redis_url: str, prover: Any,
             fence: Fence | None = None) -> JobContext:
    cfg: RollerConfig = parse_config({
        "roller_name": SLOT, "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": devnet.ws_url, "trace_endpoint": devnet.l2_url,
        "broker_url": redis_url, "retry": {"submit_backoff_seconds": 0.1},
    }, tmp_path, env={})
    return JobContext(cfg=cfg, ledger=TaskLedger.from_url(redis_url), prover=prover,
                      traces=TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01),
                      worker="test", events=Observers([metrics.record]), fence=fence)


class Session:
    """A slot registered with the devnet, as the listener keeps it."""

    def __init__(self, devnet: Devnet, account: LocalAccount) -> None:
        self.tasks: queue.Queue[TaskMsg] = queue.Queue()
        self.account = account
        self.client = CoordinatorClient(devnet.ws_url, slot=SLOT)
        self.client.connect()
        self.client.register(account, SLOT, 0, "test", self.tasks.put)

    def receive(self, devnet: Devnet, ctx: JobContext) -> TaskMsg:
        devnet.push_task(0, BLOCKS)
        task = self.tasks.get(timeout=10)
        assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
        return task

    def deliver(self, ctx: JobContext) -> int:
        assert ctx.ledger.wait_proved(1) is not None
        session = WsCoordinatorSession(self.client, self.account, SLOT, 0, "v-test")
        return Submitter(ctx.ledger, ctx.cfg.retry, 3600).drain(SLOT, self.account, session)


def submissions(devnet: Devnet, task_id: str) -> list[dict[str, Any]]:
    task = next(t for t in devnet.ledger()["tasks"] if t["id"] == task_id)
    return list(task["submissions"])


def failures(kind: str = "chunk") -> float:
    return REGISTRY.get_sample_value("roller_self_check_failures_total",
                                     {"slot": SLOT, "type": kind}) or 0.0


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "failed its own check" in r.getMessage()]


# -- the job -------------------------------------------------------------------------------


def test_a_corrupted_proof_is_proved_again_and_only_the_good_one_stored(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        caplog: pytest.LogCaptureFixture) -> None:
    prover = CorruptingProver(bad=1)
    ctx = make_ctx(tmp_path, devnet, redis_url, prover)
    session = Session(devnet, account)
    task = session.receive(devnet, ctx)
    before = failures()
    with caplog.at_level(logging.INFO, logger="roller"):
        assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == ["chunk", "chunk"]  # proved again, on the same worker
    # Both checked against the chunk info of the traces proved (the mock's: the block count).
    assert prover.checks == [("chunk", json.dumps({"block_count": 2}))] * 2
    assert failures() == before + 1
    assert warnings(caplog) == [
        f"proof failed its own check, not stored task_id={task.id} slot={SLOT} "
        f"fork={PRE_FORK} proof=1 of=3 reason='proof does not verify'"]
    rec = ctx.ledger.get(SLOT, task.id)
    # One attempt: a failed check is no crash, the ledger's count is not moved.
    assert rec is not None and rec.state is TaskState.PROVED and rec.attempts == 1
    assert rec.proof is not None and rec.proof.proof is not None
    assert prover.verify_chunk_proof(rec.proof.proof.dumps(), None)
    assert ctx.self_checks.failures == 0  # a good proof ends the run
    assert session.deliver(ctx) == 1
    assert [(s["status"], s["outcome"]) for s in submissions(devnet, task.id)] == [(0, "valid")]


def test_every_proof_failing_its_check_is_a_transient_report_and_none_is_submitted(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        caplog: pytest.LogCaptureFixture) -> None:
    prover = CorruptingProver()
    fence = Fence()
    ctx = make_ctx(tmp_path, devnet, redis_url, prover, fence)
    session = Session(devnet, account)
    task = session.receive(devnet, ctx)
    before = failures()
    with caplog.at_level(logging.INFO, logger="roller"):
        assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == ["chunk"] * 3  # retry.max_prove_attempts
    assert failures() == before + 3 and len(warnings(caplog)) == 3
    assert fence.calls == []  # one task's failures never fence (it may be the task's fault)
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.attempts == 1
    assert rec.proof is not None and rec.proof.proof is None and rec.proof.error == REJECTED
    assert session.deliver(ctx) == 1
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, REJECTED)  # a report, never the proof


def test_reproofs_spend_what_the_crashes_left_of_the_budget(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    """An attempt after a crash (the ledger counted it) has one proof less to spend."""
    prover = CorruptingProver()
    ctx = make_ctx(tmp_path, devnet, redis_url, prover)
    task = Session(devnet, account).receive(devnet, ctx)
    owner = "dead-worker:0"
    assert ctx.ledger.acquire_lease(SLOT, task.id, owner, 30)
    assert ctx.ledger.start_attempt(SLOT, task.id, owner, "dead-worker", "gpu0").started
    assert ctx.ledger.release_lease(SLOT, task.id, owner)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == ["chunk"] * 2
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.attempts == 2 and rec.proof is not None
    assert rec.proof.error == REJECTED


def test_a_valid_proof_of_other_blocks_is_not_stored(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    """The check is against the task, not "some valid proof": a prover that proves all but
    the last block (a well-formed proof of a prefix) never gets it stored."""

    class PrefixProver(MockProver):
        def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
            return super().gen_chunk_proof(json.dumps(json.loads(traces_json)[:-1]), fork)

    ctx = make_ctx(tmp_path, devnet, redis_url, PrefixProver())
    task = Session(devnet, account).receive(devnet, ctx)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.proof is not None and rec.proof.error == REJECTED


def batch_task(prover: MockProver, task_id: str) -> TaskMsg:
    chunks = [AggProof.from_json(json.loads(
        MockProver().gen_chunk_proof(json.dumps([{"n": i}] * (i + 1))))) for i in range(2)]
    return TaskMsg(id=task_id, type=ProveType.AGGREGATOR, block_hashes=(),
                   sub_proofs=tuple(chunks))


def test_a_batch_proof_is_checked_against_its_chunks_infos_in_order(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    prover = CorruptingProver(bad=1)
    ctx = make_ctx(tmp_path, devnet, redis_url, prover)
    task = batch_task(prover, "batch-sc-1")
    assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    before = failures("batch")
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == ["batch", "batch"] and failures("batch") == before + 1
    kinds = {kind for kind, _ in prover.checks}
    infos = [json.loads(i) for _, i in prover.checks]
    # The chunk infos the sub-proofs' instances carry, in the task's order (1 then 2 blocks).
    assert kinds == {"batch"} and [[i["block_count"] for i in x] for x in infos] == [[1, 2]] * 2
    assert all(len(i["data_hash"]) == 66 for x in infos for i in x)
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.proof is not None and rec.proof.status == 0


def test_a_gpu_failing_over_two_tasks_is_fenced_and_proves_no_more(
        tmp_path: Path, devnet: Devnet, redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The first task spends its 3 proofs (no fence: it could be the task); the first failure
    of the next one makes the run 4 over 2 tasks: fenced once, and that job stops proving on
    the GPU it just fenced (a transient report: another GPU gets the task sooner)."""
    prover = CorruptingProver()
    fence = Fence()
    ctx = make_ctx(tmp_path, devnet, redis_url, prover, fence)
    first, second = batch_task(prover, "batch-sc-a"), batch_task(prover, "batch-sc-b")
    for task in (first, second):
        assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    assert run_job(ctx, SLOT, first.id) is JobOutcome.STORED
    assert fence.calls == [] and len(prover.calls) == 3
    with caplog.at_level(logging.ERROR, logger="roller"):
        assert run_job(ctx, SLOT, second.id) is JobOutcome.STORED
    assert len(prover.calls) == 4
    assert fence.calls == ["4 consecutive proofs over 2 tasks failed their own check "
                           "(last: proof does not verify)"]
    assert (f"GPU producing proofs that fail their own check, fencing it task_id={second.id} "
            f"slot={SLOT} fork={PRE_FORK} failures=4 tasks=2"
            in [r.getMessage() for r in caplog.records])
    rec = ctx.ledger.get(SLOT, second.id)
    assert rec is not None and rec.proof is not None and rec.proof.error == REJECTED


def test_the_run_of_failures_needs_two_tasks_and_ends_with_a_good_proof() -> None:
    streak = SelfCheckStreak()
    assert [streak.failed("a") for _ in range(5)] == [False] * 5  # one task: never
    streak.passed()
    assert [streak.failed(t) for t in ("a", "b")] == [False, False]
    assert streak.failed("b") is True  # 3 failures, 2 tasks
    assert streak.failed("c") is False  # said once
    assert (streak.failures, streak.tasks) == (4, ["a", "b", "c"])


def test_a_check_that_cannot_run_stores_the_proof_unchecked(
        tmp_path: Path, devnet: Devnet, redis_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The verifier failing to load says nothing about the GPU: the proof is stored (the
    coordinator still verifies it), with a WARNING, and the run of failures is not moved."""

    class NoVerifier(MockProver):
        def batch_proof_rejection(self, proof_json: str, infos: str, fork: str) -> str | None:
            raise ProverError("init_batch_verifier failed for fork homestead: no such file")

    fence = Fence()
    ctx = make_ctx(tmp_path, devnet, redis_url, NoVerifier(), fence)
    task = batch_task(MockProver(), "batch-sc-unchecked")
    assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    with caplog.at_level(logging.WARNING, logger="roller"):
        assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.proof is not None and rec.proof.status == 0
    assert any(r.getMessage().startswith("proof check unavailable, proof stored unchecked "
                                         f"task_id={task.id}") for r in caplog.records)
    assert ctx.self_checks.failures == 0 and fence.calls == []


def test_the_native_rejection_reason_is_what_is_logged_and_reported(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    """A prover with `<kind>_proof_rejection` (the native one) says why: that reason, not a
    bare verdict, is in the report."""
    reason = "instance field post_state_root differs from the task: proof 0x01, task 0x02"

    class Rejecting(MockProver):
        def batch_proof_rejection(self, proof_json: str, infos: str, fork: str) -> str | None:
            return reason

    ctx = make_ctx(tmp_path, devnet, redis_url, Rejecting())
    task = batch_task(MockProver(), "batch-sc-reason")
    assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    # Transient although the text reads like an input check: the same input proved right
    # elsewhere (roller.lifecycle.failures would call it deterministic, for a day).
    assert rec is not None and rec.proof is not None
    assert rec.proof.error == FailureClass.TRANSIENT.reason(f"{SELF_CHECK_FAILED}: {reason}")


def test_the_seed_abi_is_not_checked(tmp_path: Path, devnet: Devnet, redis_url: str,
                                     account: LocalAccount) -> None:
    """The seed verifier takes no task (and its init aborts on a bad key): never called."""

    class Seed(SeedProver):
        def __init__(self) -> None:  # no library: proofs from the mock
            self.mock = CorruptingProver()

        def gen_chunk_proof(self, traces_json: str, fork: str = PRE_FORK) -> str:
            return self.mock.gen_chunk_proof(traces_json, fork)

        def _verify(self, proof_json: str) -> bool:
            raise AssertionError("the seed verifier must not be called")

    ctx = make_ctx(tmp_path, devnet, redis_url, Seed())
    task = Session(devnet, account).receive(devnet, ctx)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.proof is not None and rec.proof.status == 0


# -- the native prover: its verifier catches the corruption, and says why ------------------

FAULT_LIB = (Path(__file__).resolve().parents[1]
             / "native/target/features-fault-injection/release/libroller_prover.so")


@pytest.mark.integration
@pytest.mark.skipif(not FAULT_LIB.exists(), reason="fault-injection build missing")
def test_the_native_check_refuses_a_corrupted_proof_naming_why(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        params_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault build's `corrupt` (one bit of every proof flipped): the job's check against
    the chunk info of its traces refuses each of the 3 proofs with the verifier's reason, and
    the report carries it."""
    from roller.ffi.native import RollerProver

    monkeypatch.setenv("ROLLER_PROVER_FAULT", "corrupt")
    prover = RollerProver(str(FAULT_LIB), str(params_dir), chain_id=534352)
    ctx = make_ctx(tmp_path, devnet, redis_url, prover)
    task = Session(devnet, account).receive(devnet, ctx)
    before = failures()
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert failures() == before + 3
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.proof is not None and rec.proof.proof is None
    assert rec.proof.error.startswith(
        FailureClass.TRANSIENT.reason(f"{SELF_CHECK_FAILED}: proof does not verify")), \
        rec.proof.error


@pytest.mark.integration
def test_the_devnet_verifier_refuses_a_valid_proof_of_other_blocks(
        prover: Any, params_dir: Path) -> None:
    """What a roller without this check would submit (a valid proof of all of the task's
    blocks but the last) is refused by the devnet's native verifier, naming the field."""
    from roller.devnet.tasksource import TaskRecord as DevnetTask
    from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
    from roller.devnet.verifier import NativeVerifier

    index = load_trace_dir(DEFAULT_TRACE_DIR)
    numbers = (2670, 2671, 2672)
    task = DevnetTask(id="0x" + "cd" * 32, type=0, block_numbers=numbers,
                      block_hashes=tuple(index.by_number[n].hash for n in numbers))
    prefix = "[" + ",".join(index.by_number[n].raw.decode() for n in numbers[:-1]) + "]"
    proof = AggProof.from_json(json.loads(prover.gen_chunk_proof(prefix)))
    verdict = NativeVerifier(params_dir, index).verify(task, proof)
    assert not verdict.valid
    assert "instance field post_state_root differs from the task" in verdict.reason, verdict


# -- the fence: the pool process asks, the worker's parent stops consuming -------------------


class Stopper:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, queues: list[str], note: str = "") -> None:
        self.calls.append((queues, note))


@pytest.fixture
def worker_fence() -> Iterator[Stopper]:
    stopper = Stopper()
    gpu_guard._fence = GpuGuard(None, [], "gpu3@sc", ["gpu3"], stopper)
    yield stopper
    gpu_guard._fence = None


def test_the_remote_control_command_fences_the_worker_once(
        worker_fence: Stopper, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="roller"):
        reply = gpu_guard.roller_fence_self_check(SimpleNamespace(), why="4 consecutive ...")
        gpu_guard.roller_fence_self_check(SimpleNamespace(), why="again")
    assert reply == {"ok": "fenced"}
    assert worker_fence.calls == [(["gpu3"], SELF_CHECK_FENCE_NOTE)]
    assert [r.getMessage() for r in caplog.records] == [
        "GPU fenced, the worker stops taking jobs: 4 consecutive ... worker=gpu3@sc "
        "queues=gpu3 reason=self_check"]
    assert REGISTRY.get_sample_value("roller_worker_consuming",
                                     {"worker": "gpu3@sc", "queue": "gpu3"}) == 0


def test_a_cpu_worker_has_a_fence_that_cancels_its_queues(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    class Consumer:
        hostname = "gpu4@cpu"
        hub = None

        def __init__(self) -> None:
            self.cancelled: list[str] = []
            self.task_consumer = SimpleNamespace(queues=[SimpleNamespace(name="gpu4")])

        def cancel_task_queue(self, queue: str) -> None:
            self.cancelled.append(queue)

    monkeypatch.setattr(gpu_guard, "_nvml", None)
    monkeypatch.setattr(gpu_guard, "_ledger", lambda: None)
    consumer = Consumer()
    try:
        gpu_guard.start_sampler(sender=consumer)
        assert gpu_guard._guard is None and consumer.cancelled == []
        gpu_guard.roller_fence_self_check(SimpleNamespace(), why="x")
        assert consumer.cancelled == ["gpu4"]
    finally:
        gpu_guard._fence = None


def test_the_pool_process_tells_the_listener_and_asks_its_own_worker(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any], list[str]]] = []

    def broadcast(command: str, arguments: dict[str, Any], destination: list[str]) -> None:
        sent.append((command, arguments, destination))

    task = SimpleNamespace(request=SimpleNamespace(hostname="gpu5@host"),
                           app=SimpleNamespace(control=SimpleNamespace(broadcast=broadcast)))
    monkeypatch.setattr(gpu_guard, "current_task", task)
    ledger = TaskLedger.from_url(redis_url)
    gpu_guard.self_check_fencer(ledger, ["gpu5"])("why")
    assert ledger.fenced("gpu5") == SELF_CHECK_FENCE_NOTE
    assert sent == [("roller_fence_self_check", {"why": "why"}, ["gpu5@host"])]
