"""Orchestration of one job (roller.worker.job) against a real Redis, the in-process devnet over
loopback and the mock prover: fast checks of the ordering rules (attempts before proving,
outbox before submit, the worker never submits, submit never re-proves)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from devnet_helpers import wait_until
from eth_account import Account
from eth_account.signers.local import LocalAccount

from roller.config import RollerConfig, parse_config, proof_kind
from roller.devnet.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.ffi.mock import MockProver
from roller.ledger import AssignResult, TaskLedger, TaskState
from roller.lifecycle.failures import PROVING_PANIC, TRACES_FAILED
from roller.listener.submitter import Submitter
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.encoding import go_dumps
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.http_messages import GetTaskResponse, agg_proof_to_json, to_task_msg
from roller.protocol.messages import AggProof, FailureClass, ProveType, TaskMsg, slot_proves
from roller.protocol.session import WsCoordinatorSession
from roller.worker.job import JobContext, JobOutcome, run_job
from roller.worker.prover import prove_types
from roller.worker.trace_client import TraceClient

SLOT = "slot0"


@pytest.fixture
def devnet() -> Iterator[Devnet]:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                trace_dir=DATA_DIR / "traces", chunk_tasks=False,
                dispatch_interval=0.05) as net:
        yield net


class Registered:
    """A slot registered with the devnet, as the listener keeps it; tasks land in a queue."""

    def __init__(self, devnet: Devnet, account: LocalAccount) -> None:
        self.tasks: queue.Queue[TaskMsg] = queue.Queue()
        self.client = CoordinatorClient(devnet.ws_url, slot=SLOT)
        self.client.connect()
        self.client.register(account, SLOT, 0, "test", self.tasks.put)

    def next_task(self) -> TaskMsg:
        return self.tasks.get(timeout=10)


def make_cfg(tmp_path: Path, devnet: Devnet, redis_url: str) -> RollerConfig:
    return parse_config({
        "roller_name": SLOT, "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": devnet.ws_url, "trace_endpoint": devnet.l2_url,
        "broker_url": redis_url, "retry": {"submit_backoff_seconds": 0.1},
    }, tmp_path, env={})


def make_ctx(cfg: RollerConfig, prover: MockProver) -> JobContext:
    return JobContext(cfg=cfg, ledger=TaskLedger.from_url(cfg.broker_url), prover=prover,
                      traces=TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01),
                      worker="test")


@pytest.fixture
def account() -> LocalAccount:
    return Account.create()


def receive(devnet: Devnet, ctx: JobContext, account: LocalAccount,
            hashes: list[str]) -> tuple[Registered, TaskMsg]:
    session = Registered(devnet, account)
    devnet.push_task(0, hashes)
    task = session.next_task()
    assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    return session, task


def ws(client: CoordinatorClient, account: LocalAccount) -> WsCoordinatorSession:
    """The listener's view of a registered WS client."""
    return WsCoordinatorSession(client, account, SLOT, 0, "v-test")


def deliver(ctx: JobContext, account: LocalAccount, session: Registered,
            window: float = 3600) -> int:
    """What the listener does when a worker wakes it: submit the slot's due answers."""
    assert ctx.ledger.wait_proved(1) is not None
    submitter = Submitter(ctx.ledger, ctx.cfg.retry, window)
    return submitter.drain(SLOT, account, ws(session.client, account))


BLOCKS = ["0xc7b6c7022c8386cdaf6fcd3d4f8d03dce257ae3664a072fdce511ecefce73ad0",
          "0x13ddd94de9c585c50c6885d4ef649292c2624ae7c8fc73781ee8785f2564b44c"]


def submissions(devnet: Devnet, task_id: str) -> list[dict]:
    task = next(t for t in devnet.ledger()["tasks"] if t["id"] == task_id)
    return list(task["submissions"])


def test_job_proves_and_stores_then_the_listener_delivers(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.attempts == 1
    assert submissions(devnet, task.id) == []  # the worker never speaks to the coordinator
    assert deliver(ctx, account, session) == 1
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.DELIVERED
    assert [s["outcome"] for s in submissions(devnet, task.id)] == ["valid"]
    # a redelivered job finds the task answered and does nothing
    assert run_job(ctx, SLOT, task.id) is JobOutcome.ALREADY_DONE
    assert len(prover.calls) == 1


def test_refused_submit_is_retried_from_outbox_without_reproving(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    session.client.close()  # the key is no longer registered: submit fails
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert ctx.ledger.wait_proved(1) == (SLOT, task.id)
    submitter = Submitter(ctx.ledger, ctx.cfg.retry, 3600)
    assert submitter.drain(SLOT, account, ws(session.client, account)) == 0
    assert ctx.ledger.outbox_size(SLOT) == 1
    # The old subscription must have ended first: its end frees the key from the pool, and
    # would undo a registration that raced ahead of it.
    wait_until(lambda: not devnet.ledger()["rollers"])
    again = Registered(devnet, account)  # re-register restores the right to submit
    assert wait_until(lambda: any(task.id in r["task_ids"] for r in devnet.ledger()["rollers"]))
    assert submitter.drain(SLOT, account, ws(again.client, account),
                           now=time.time() + 60) == 1
    assert ctx.ledger.outbox_size(SLOT) == 0
    assert len(prover.calls) == 1
    outcomes = [s.get("outcome") for s in submissions(devnet, task.id)]
    assert outcomes[-1] == "valid"


def test_poison_task_reported_after_three_started_attempts(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    for i in range(3):  # three attempts that died mid-proof
        owner = f"dead-worker:{i}"
        assert ctx.ledger.acquire_lease(SLOT, task.id, owner, 30)
        assert ctx.ledger.start_attempt(SLOT, task.id, owner, "dead-worker", "gpu0").started
        assert ctx.ledger.release_lease(SLOT, task.id, owner)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == []
    assert deliver(ctx, account, session) == 1
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, FailureClass.TRANSIENT.reason(PROVING_PANIC))
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.FAILED


def test_trace_failure_reports_get_traces_failed(tmp_path: Path, devnet: Devnet, redis_url: str,
                                                 account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    devnet.set_l2_fault("null")
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    deliver(ctx, account, session)
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, FailureClass.TRANSIENT.reason(TRACES_FAILED))
    assert prover.calls == []


def test_prover_error_text_is_reported(tmp_path: Path, devnet: Devnet, redis_url: str,
                                       account: LocalAccount) -> None:
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url),
                   MockProver(fail_with="chunk exceeds circuit capacity"))
    session, task = receive(devnet, ctx, account, BLOCKS)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    deliver(ctx, account, session)
    [sub] = submissions(devnet, task.id)
    # A text no rule of roller.lifecycle.failures knows is transient.
    assert (sub["status"], sub["error"]) == (1, "[transient] chunk exceeds circuit capacity")


def test_task_past_its_session_window_is_not_proved(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    cfg = replace(make_cfg(tmp_path, devnet, redis_url), session_window_minutes=0.5 / 60)
    ctx = make_ctx(cfg, prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    ctx.ledger.note(SLOT, task.id, received_at=time.time() - 1)  # half a second too old
    assert run_job(ctx, SLOT, task.id) is JobOutcome.EXPIRED
    assert prover.calls == []
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.EXPIRED


def test_dump_dir_gets_the_proof(tmp_path: Path, devnet: Devnet, redis_url: str,
                                 account: LocalAccount) -> None:
    cfg = make_cfg(tmp_path, devnet, redis_url)
    cfg = replace(cfg, prover=replace(cfg.prover, dump_dir=tmp_path / "dump"))
    ctx = make_ctx(cfg, MockProver())
    _, task = receive(devnet, ctx, account, BLOCKS)
    run_job(ctx, SLOT, task.id)
    assert (tmp_path / "dump" / task.id).read_text().startswith('{"proof"')


def _mock_batches(prover: MockProver) -> list[AggProof]:
    chunks = [prover.gen_chunk_proof(json.dumps([{"n": i}] * 2)) for i in range(3)]
    return [AggProof.from_json(json.loads(prover.gen_batch_proof(json.dumps(cs))))
            for cs in ([json.loads(chunks[0]), json.loads(chunks[1])], [json.loads(chunks[2])])]


@pytest.mark.parametrize("carrier", ["sub_proofs", "http_task"])
def test_bundle_job_proves_from_batch_proofs(tmp_path: Path, devnet: Devnet, redis_url: str,
                                             carrier: str) -> None:
    """A type-2 task is proved with gen_bundle_proof over its batch proofs, whether they come
    in a TaskMsg or in an HTTP H3 task's task_data (`batch_proofs`, HTTP proof JSON)."""
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    batches = _mock_batches(prover)
    if carrier == "sub_proofs":
        task = TaskMsg(id="bundle-1", type=ProveType.BUNDLE, block_hashes=(),
                       sub_proofs=tuple(batches))
    else:
        data = go_dumps({"batch_proofs": [json.loads(agg_proof_to_json(p)) for p in batches]})
        task = to_task_msg(GetTaskResponse(generation=Generation.H3, task_id="ab" * 32,
                                           task_type=TaskType.BUNDLE, task_data=data,
                                           # Names no fork: proved under the newest held,
                                           # homestead here, as the mock batches are.
                                           uuid="u-1", hard_fork_name=""))
    assert ctx.ledger.assign(SLOT, task, epoch=1).result is AssignResult.NEW
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.PROVED
    assert rec.proof is not None and rec.proof.status == 0 and rec.proof.proof is not None
    assert rec.proof.proof.block_count == 6
    assert prover.calls[-1] == "bundle"
    infos = json.dumps([{"block_count": 4}, {"block_count": 2}])
    assert prover.verify_bundle_proof(json.dumps(rec.proof.proof.to_json()), infos)


def test_batch_slots_prove_bundles() -> None:
    assert [proof_kind(t) for t in (0, 1, 2)] == ["chunk", "batch", "bundle"]
    assert slot_proves(1, ProveType.BUNDLE) and slot_proves(1, ProveType.AGGREGATOR)
    assert not slot_proves(0, ProveType.BUNDLE) and not slot_proves(1, ProveType.BASIC)


def test_prove_types_of_a_batch_queue_are_plain_ints(tmp_path: Path) -> None:
    """A batch slot's worker warms up batch and bundle; the list is written into the
    preflight's `python -c` source, so it must read back as plain ints."""
    cfg = parse_config({
        "roller_name": "r", "keystore_password": "x", "coordinator_url": "ws://127.0.0.1:1",
        "trace_endpoint": "http://127.0.0.1:2", "broker_url": "redis://127.0.0.1:3/0",
        "slots": [{"name": "c", "queue": "gpu0", "prove_type": 0, "keystore_path": "a.json"},
                  {"name": "b", "queue": "gpu1", "prove_type": 1, "keystore_path": "b.json"}],
    }, tmp_path, env={})
    assert repr(prove_types(cfg, {"gpu1"})) == "[1, 2]"
    assert repr(prove_types(cfg, {"gpu0", "gpu1"})) == "[0, 1, 2]"


def test_stale_message_of_an_earlier_drive_is_acknowledged_without_proving(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    assert ctx.ledger.begin_send(SLOT, task.id) == 1
    assert ctx.ledger.begin_send(SLOT, task.id) == 2  # re-driven: a second message
    assert run_job(ctx, SLOT, task.id, drive=1) is JobOutcome.STALE
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.attempts == 0 and prover.calls == []
    assert run_job(ctx, SLOT, task.id, drive=2) is JobOutcome.STORED


def test_warm_up_runs_under_the_lease(tmp_path: Path, devnet: Devnet, redis_url: str,
                                      account: LocalAccount) -> None:
    """A first job's warm-up (minutes on a real GPU) holds the lease: never a dead worker."""
    seen: list[bool] = []
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), MockProver())
    _, task = receive(devnet, ctx, account, BLOCKS)
    ctx = replace(ctx, ready=lambda: seen.append(ctx.ledger.leased(SLOT, task.id)))
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert seen == [True]


def lease_lapsed_mid_proof(ctx: JobContext, prover: MockProver, task: TaskMsg
                           ) -> tuple[threading.Thread, list[JobOutcome]]:
    """The task's job running in a thread, its lease gone from under it once the prover
    runs (a frozen process, a Redis restart): the thread and where its outcome lands."""
    outcome: list[JobOutcome] = []
    job = threading.Thread(target=lambda: outcome.append(run_job(ctx, SLOT, task.id)))
    job.start()
    wait_until(lambda: prover.calls != [], 5)
    ctx.ledger.r.delete(f"roller:lock:{SLOT}:{task.id}")
    return job, outcome


def test_a_job_that_lost_its_lease_to_another_attempt_stores_nothing(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen past its lease (a stopped process, a long Redis outage), the task re-driven
    and taken by another worker: when the first proof returns it is thrown away."""
    # Renewal every 0.2 s instead of 10 s: the same code path, in test time.
    monkeypatch.setattr("roller.worker.job.LEASE_RENEW_SECONDS", 0.2)
    prover = MockProver(delay=2.0)
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    ledger = ctx.ledger
    job, outcome = lease_lapsed_mid_proof(ctx, prover, task)
    # The listener re-drives; another worker takes it.
    assert ledger.requeue(SLOT, task.id).ok
    assert ledger.acquire_lease(SLOT, task.id, "other:1:x", 30)
    assert ledger.start_attempt(SLOT, task.id, "other:1:x", "other", "gpu0").started
    job.join(10)
    assert outcome == [JobOutcome.LEASE_LOST]
    rec = ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.PROVING and rec.proof is None
    assert ledger.outbox_due(SLOT) == []


def test_a_lease_lost_with_nobody_else_is_taken_back(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("roller.worker.job.LEASE_RENEW_SECONDS", 0.2)
    prover = MockProver(delay=1.5)
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    job, outcome = lease_lapsed_mid_proof(ctx, prover, task)  # a Redis restart lost it
    wait_until(lambda: ctx.ledger.leased(SLOT, task.id), 5)  # the job took it back
    job.join(10)
    assert outcome == [JobOutcome.STORED]


def test_a_resumed_job_keeps_its_work_over_a_waiting_redrive(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen past its lease, the task re-driven, the new job still waiting in the queue
    (one worker): resumed, the job takes the lease back and stores its proof; the waiting
    job then finds the task answered and proves nothing."""
    monkeypatch.setattr("roller.worker.job.LEASE_RENEW_SECONDS", 0.2)  # the same code path
    prover = MockProver(delay=1.5)
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    ledger = ctx.ledger
    job, outcome = lease_lapsed_mid_proof(ctx, prover, task)
    # The listener re-drove the task: a new message.
    assert ledger.requeue(SLOT, task.id).ok
    drive = ledger.begin_send(SLOT, task.id)
    assert ledger.mark_queued(SLOT, task.id).ok
    job.join(10)
    assert outcome == [JobOutcome.STORED]
    rec = ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.PROVED and rec.attempts == 1
    assert run_job(ctx, SLOT, task.id, drive=drive) is JobOutcome.ALREADY_DONE
    assert len(prover.calls) == 1


@pytest.mark.parametrize(("mode", "block", "why"), [
    ("otherblock", BLOCKS[0], "answered the trace of another block"),
    ("badparent", BLOCKS[1], "header.parentHash"),
])
def test_trace_of_other_blocks_ends_in_a_failure_report_naming_the_block(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount,
        mode: str, block: str, why: str) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    devnet.set_l2_fault(mode)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert prover.calls == []  # never a proof of other blocks
    deliver(ctx, account, session)
    [sub] = submissions(devnet, task.id)
    assert sub["status"] == 1
    assert sub["error"].startswith(f"[transient] {TRACES_FAILED}: block {block}: ")
    assert why in sub["error"]


class RateLimitedOnce:
    """An injected transport: the L2 node's first answer is a 429 with Retry-After, then
    the real node over loopback answers."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.calls = 0

    def post(self, url: str, *, json: Any, timeout: float) -> Any:
        self.calls += 1
        if self.calls == 1:
            response = requests.Response()
            response.status_code = 429
            response.headers["Retry-After"] = "3"
            return response
        return self.session.post(url, json=json, timeout=timeout)


def test_l2_rate_limit_then_200_proves(tmp_path: Path, devnet: Devnet, redis_url: str,
                                       account: LocalAccount) -> None:
    prover = MockProver()
    cfg = make_cfg(tmp_path, devnet, redis_url)
    transport, slept = RateLimitedOnce(), []
    ctx = make_ctx(cfg, prover)
    ctx.traces = TraceClient(cfg.trace_endpoint, retries=0, transport=transport,
                             sleep=slept.append)
    session, task = receive(devnet, ctx, account, BLOCKS)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert slept == [3.0] and transport.calls == 2  # waited as asked, not counted as a retry
    assert len(prover.calls) == 1
    assert deliver(ctx, account, session) == 1
    assert [s["outcome"] for s in submissions(devnet, task.id)] == ["valid"]
