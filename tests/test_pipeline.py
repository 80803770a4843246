"""Several identities on one GPU queue: traces fetched ahead for the queued task while the
current one proves (roller.worker.trace_prefetch), and the session-window budget of the
queue (roller.listener.queue_room).
Real Redis, the devnet's L2 node, the mock prover."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from roller.config import RollerConfig, parse_config
from roller.devnet.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.ffi.mock import MockProver
from roller.ledger import TaskLedger, TaskState
from roller.listener.queue_room import room_on_queue
from roller.localrun import wait_for
from roller.protocol.messages import TaskMsg
from roller.worker.job import JobContext, JobOutcome, run_job
from roller.worker.trace_client import TraceClient
from roller.worker.trace_prefetch import TracePrefetcher

BLOCKS = ["0xc7b6c7022c8386cdaf6fcd3d4f8d03dce257ae3664a072fdce511ecefce73ad0",
          "0x13ddd94de9c585c50c6885d4ef649292c2624ae7c8fc73781ee8785f2564b44c"]


@pytest.fixture
def devnet() -> Iterator[Devnet]:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                trace_dir=DATA_DIR / "traces", chunk_tasks=False) as net:
        yield net


class CountingTraces(TraceClient):
    def __init__(self, url: str) -> None:
        super().__init__(url, retries=1, backoff=0.01)
        self.fetched: list[tuple[str, ...]] = []

    def get_traces_json(self, block_hashes: Sequence[str], **kw: Any) -> str:
        self.fetched.append(tuple(block_hashes))
        return super().get_traces_json(block_hashes, **kw)


def two_ids(tmp_path: Path, devnet: Devnet, redis_url: str, window_min: float = 180
            ) -> RollerConfig:
    return parse_config({
        "roller_name": "r", "keystore_path": "k.json", "keystore_password": "x",
        "coordinator_url": devnet.ws_url, "trace_endpoint": devnet.l2_url,
        "broker_url": redis_url, "identities_per_gpu": 2,
        "session_window_minutes": window_min}, tmp_path, env={})


def queue_task(ledger: TaskLedger, slot: str, task_id: str, hashes: list[str]) -> None:
    ledger.assign(slot, TaskMsg(id=task_id, type=0, block_hashes=tuple(hashes),
                                sub_proofs=()), epoch=1)
    assert ledger.mark_queued(slot, task_id).ok


def test_the_queued_task_of_the_other_identity_is_fetched_while_one_proves(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    cfg = two_ids(tmp_path, devnet, redis_url)
    first, second = (s.name for s in cfg.slots)
    ledger = TaskLedger.from_url(redis_url)
    own = CountingTraces(devnet.l2_url)
    ahead = CountingTraces(devnet.l2_url)
    ctx = JobContext(cfg=cfg, ledger=ledger, prover=MockProver(delay=0.5), traces=own,
                     worker="test", prefetch=TracePrefetcher(ledger, ahead, cfg.slots))
    queue_task(ledger, first, "0xa1", BLOCKS[:1])
    queue_task(ledger, second, "0xb2", BLOCKS)
    assert run_job(ctx, first, "0xa1") is JobOutcome.STORED
    assert ahead.fetched == [tuple(BLOCKS)]  # fetched while 0xa1 proved (0.5 s)
    assert run_job(ctx, second, "0xb2") is JobOutcome.STORED
    assert own.fetched == [tuple(BLOCKS[:1])]  # the second job fetched nothing itself
    rec = ledger.get(second, "0xb2")
    assert rec is not None and rec.state is TaskState.PROVED


def test_a_task_queued_while_one_proves_is_fetched_before_its_job_starts(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    """The usual order: the other identity's next task arrives during the current proof
    (after the coordinator verified that identity's previous proof)."""
    cfg = two_ids(tmp_path, devnet, redis_url)
    first, second = (s.name for s in cfg.slots)
    ledger = TaskLedger.from_url(redis_url)
    own = CountingTraces(devnet.l2_url)
    ahead = CountingTraces(devnet.l2_url)
    ctx = JobContext(cfg=cfg, ledger=ledger, prover=MockProver(delay=3), traces=own,
                     worker="test", prefetch=TracePrefetcher(ledger, ahead, cfg.slots))
    queue_task(ledger, first, "0xf6", BLOCKS[:1])
    job = threading.Thread(target=run_job, args=(ctx, first, "0xf6"))
    job.start()
    wait_for(lambda: "prove_started_at" in ledger.r.hgetall(f"roller:task:{first}:0xf6"),
             10, "the first proof to start", interval=0.02)
    queue_task(ledger, second, "0xf7", BLOCKS)
    job.join(30)
    assert ahead.fetched == [tuple(BLOCKS)]
    assert run_job(ctx, second, "0xf7") is JobOutcome.STORED
    assert own.fetched == [tuple(BLOCKS[:1])]


def test_prefetched_traces_of_another_task_are_not_used(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    cfg = two_ids(tmp_path, devnet, redis_url)
    first, second = (s.name for s in cfg.slots)
    ledger = TaskLedger.from_url(redis_url)
    prefetch = TracePrefetcher(ledger, TraceClient(devnet.l2_url), cfg.slots)
    queue_task(ledger, first, "0xc3", BLOCKS[:1])
    queue_task(ledger, second, "0xd4", BLOCKS)
    current = ledger.get(first, "0xc3")
    assert current is not None
    prefetch.ahead_of(current)
    wait_for(lambda: prefetch._held is not None, 10, "the prefetch")
    assert prefetch.take(current) is None  # held traces are 0xd4's: dropped, not misused
    other = ledger.get(second, "0xd4")
    assert other is not None and prefetch.take(other) is None  # already forgotten


def test_a_slot_takes_no_task_its_queue_cannot_prove_within_the_window(
        tmp_path: Path, devnet: Devnet, redis_url: str) -> None:
    cfg = two_ids(tmp_path, devnet, redis_url, window_min=1)
    first, second = cfg.slots
    ledger = TaskLedger.from_url(redis_url)
    assert room_on_queue(cfg, second, ledger)  # nothing ahead on the queue
    queue_task(ledger, first.name, "0xe5", BLOCKS[:1])
    assert room_on_queue(cfg, second, ledger)  # no proof time known: one behind
    ledger.note(first.name, "0xe5", prove_seconds=40.0)  # two 40 s proofs > 60 s window
    assert not room_on_queue(cfg, second, ledger)
    ledger.note(first.name, "0xe5", prove_seconds=20.0)
    assert room_on_queue(cfg, second, ledger)
    single = parse_config(_seed(devnet, redis_url), tmp_path, env={})
    assert room_on_queue(single, single.slots[0], ledger)  # one identity: always


def _seed(devnet: Devnet, redis_url: str) -> dict[str, object]:
    return {"roller_name": "solo", "keystore_path": "k.json", "keystore_password": "x",
            "coordinator_url": devnet.ws_url, "trace_endpoint": devnet.l2_url,
            "broker_url": redis_url}
