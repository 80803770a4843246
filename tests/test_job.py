"""Orchestration of one job (roller.job) against a real Redis, the in-process devnet over
loopback and the mock prover: fast checks of the ordering rules (attempts before proving,
outbox before submit, submit never re-proves)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from roller.config import RollerConfig, parse_config
from roller.coordinator_client import CoordinatorClient
from roller.devnet.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.ffi.mock import MockProver
from roller.job import PROVING_PANIC, TRACES_FAILED, JobContext, JobOutcome, run_job
from roller.ledger import TaskLedger, TaskState
from roller.protocol.messages import TaskMsg
from roller.submitter import Submitter
from roller.trace_client import TraceClient

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


def make_ctx(cfg: RollerConfig, account: LocalAccount, prover: MockProver,
             window: float = 3600) -> JobContext:
    ledger = TaskLedger.from_url(cfg.broker_url)

    def connect(slot: str) -> CoordinatorClient:
        client = CoordinatorClient(cfg.coordinator_url, slot=slot)
        client.connect()
        return client

    return JobContext(cfg=cfg, ledger=ledger, prover=prover,
                      traces=TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01),
                      account_for=lambda _slot: account, connect=connect,
                      submitter=Submitter(ledger, cfg.retry, window), worker="test")


@pytest.fixture
def account() -> LocalAccount:
    return Account.create()


def receive(devnet: Devnet, ctx: JobContext, account: LocalAccount,
            hashes: list[str]) -> tuple[Registered, TaskMsg]:
    session = Registered(devnet, account)
    devnet.push_task(0, hashes)
    task = session.next_task()
    assert ctx.ledger.record_new(SLOT, task)
    return session, task


BLOCKS = ["0xc7b6c7022c8386cdaf6fcd3d4f8d03dce257ae3664a072fdce511ecefce73ad0",
          "0x13ddd94de9c585c50c6885d4ef649292c2624ae7c8fc73781ee8785f2564b44c"]


def submissions(devnet: Devnet, task_id: str) -> list[dict]:
    task = next(t for t in devnet.ledger()["tasks"] if t["id"] == task_id)
    return list(task["submissions"])


def test_job_proves_stores_and_submits(tmp_path: Path, devnet: Devnet, redis_url: str,
                                       account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account, prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.SUBMITTED
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.DELIVERED and rec.attempts == 1
    assert [s["outcome"] for s in submissions(devnet, task.id)] == ["valid"]
    # a redelivered job finds the task final and does nothing
    assert run_job(ctx, SLOT, task.id) is JobOutcome.ALREADY_DONE
    assert len(prover.calls) == 1


def test_refused_submit_is_retried_from_outbox_without_reproving(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account, prover)
    session, task = receive(devnet, ctx, account, BLOCKS)
    session.client.close()  # the key is no longer registered: submit is refused
    time.sleep(0.3)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.HELD
    assert ctx.ledger.outbox_size() == 1
    again = Registered(devnet, account)  # re-register restores the right to submit
    time.sleep(0.3)
    assert ctx.submitter.drain(SLOT, account, again.client, now=time.time() + 60) == 1
    assert ctx.ledger.outbox_size() == 0
    assert len(prover.calls) == 1
    outcomes = [s.get("outcome") for s in submissions(devnet, task.id)]
    assert outcomes[-1] == "valid"


def test_poison_task_reported_after_three_started_attempts(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account, prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    for _ in range(3):  # three attempts that died mid-proof
        ctx.ledger.start_attempt(SLOT, task.id, "dead-worker", "gpu0")
    assert run_job(ctx, SLOT, task.id) is JobOutcome.SUBMITTED
    assert prover.calls == []
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, PROVING_PANIC)


def test_trace_failure_reports_get_traces_failed(tmp_path: Path, devnet: Devnet, redis_url: str,
                                                 account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account, prover)
    _, task = receive(devnet, ctx, account, BLOCKS)
    devnet.set_l2_fault("null")
    assert run_job(ctx, SLOT, task.id) is JobOutcome.SUBMITTED
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, TRACES_FAILED)
    assert prover.calls == []


def test_prover_error_text_is_reported(tmp_path: Path, devnet: Devnet, redis_url: str,
                                       account: LocalAccount) -> None:
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account,
                   MockProver(fail_with="chunk exceeds circuit capacity"))
    _, task = receive(devnet, ctx, account, BLOCKS)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.SUBMITTED
    [sub] = submissions(devnet, task.id)
    assert (sub["status"], sub["error"]) == (1, "chunk exceeds circuit capacity")


def test_task_past_its_session_window_is_not_proved(
        tmp_path: Path, devnet: Devnet, redis_url: str, account: LocalAccount) -> None:
    prover = MockProver()
    ctx = make_ctx(make_cfg(tmp_path, devnet, redis_url), account, prover, window=0.5)
    _, task = receive(devnet, ctx, account, BLOCKS)
    time.sleep(0.6)
    assert run_job(ctx, SLOT, task.id) is JobOutcome.EXPIRED
    assert prover.calls == []
    rec = ctx.ledger.get(SLOT, task.id)
    assert rec is not None and rec.state is TaskState.EXPIRED


def test_dump_dir_gets_the_proof(tmp_path: Path, devnet: Devnet, redis_url: str,
                                 account: LocalAccount) -> None:
    cfg = make_cfg(tmp_path, devnet, redis_url)
    cfg = replace(cfg, prover=replace(cfg.prover, dump_dir=tmp_path / "dump"))
    ctx = make_ctx(cfg, account, MockProver())
    _, task = receive(devnet, ctx, account, BLOCKS)
    run_job(ctx, SLOT, task.id)
    assert (tmp_path / "dump" / task.id).read_text().startswith('{"proof"')
