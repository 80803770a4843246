"""A good citizen on a shared coordinator (issue 22, item 6): a batch that can never be proved
(its chunk proofs are garbage) on the devnet's H3 coordinator, which hands a failed task
straight back as v4.4.x does. The slot answers each assignment with one failure report and
then waits, longer each time, before asking again; its own per-task budget is below the
coordinator's `session_attempts`.

The first test drives the session alone (mock prover, in process). The second is the whole
roller on the devnet (redis-server, the listener, a celery worker, the native prover): the
prover refuses the batch (a deterministic failure, roller.lifecycle.failures), the identity
remembers it, and every re-assignment is answered at once with the same report, without a job."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from roller.config import RetryConfig
from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import AGGREGATOR, TaskBook, TaskRecord
from roller.devnet.verifier import StandInVerifier
from roller.errors import ProverError
from roller.ffi.mock import MockProver
from roller.ledger import TaskLedger, TaskState
from roller.localrun import LocalCluster, demo_slots
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.messages import AggProof, ProofDetail, RespStatus, TaskMsg
from roller.protocol.session import HttpCoordinatorSession

VERSION = "v4.4.45-000000-000000-000000"
BATCH = "0x" + "bb" * 32
BACKOFF = 0.4


def test_an_unprovable_batch_is_reported_once_per_assignment_with_backoff() -> None:
    garbage = AggProof(b"\x01" * 32, b"\x02" * 216, b"", b"\x03" * 32, 0)
    book = TaskBook()
    book.add(TaskRecord(id=BATCH, type=AGGREGATOR, sub_proofs=(garbage,), source="batch"))
    config = HttpCoordinatorConfig(Generation.H3, session_attempts=5)
    assert RetryConfig().max_task_attempts < config.session_attempts  # the roller acts first
    coord = HttpCoordinator(book, StandInVerifier(), config)
    coord.start()
    assert coord._server is not None
    client = HttpCoordinatorClient(f"http://127.0.0.1:{coord._server.server_address[1]}",
                                   Generation.H3, Account.create(), prover_name="batch-0",
                                   prover_version=VERSION, prover_types=(2,),
                                   vks=("mock_vk",))
    session = HttpCoordinatorSession(client, slot="batch-0", task_types=(TaskType.BATCH,),
                                     prover_height=lambda: 10**6, poll_interval=0.02,
                                     refused_interval=0.02, failure_backoff=BACKOFF)
    prover = MockProver()
    busy = threading.Event()
    reported: list[float] = []

    def on_task(task: TaskMsg) -> None:  # the worker: the batch cannot be proved
        busy.set()
        try:
            prover.gen_batch_proof("[" + ",".join(p.dumps() for p in task.sub_proofs) + "]")
            raise AssertionError("a garbage batch was proved")
        except ProverError as exc:
            detail = ProofDetail(id=task.id, type=task.type, status=RespStatus.ERROR,
                                 proof=None, error=str(exc))
        session.submit(task, detail, client._account)
        reported.append(time.monotonic())
        busy.clear()
        session.poke()  # the listener pokes once the answer left the outbox

    session.open(on_task, lambda: not busy.is_set())
    try:
        deadline = time.monotonic() + 10
        while len(reported) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        session.close()
        coord.stop()
    assert len(reported) >= 3, reported
    gaps = [b - a for a, b in zip(reported, reported[1:], strict=False)]
    # Not taken again at once: BACKOFF, then twice that (the real v4.4.23 saw 5 in 0.7 s).
    assert gaps[0] >= BACKOFF and gaps[1] >= 2 * BACKOFF, gaps
    rows = [r for r in coord.state.rows if r.task_id == BATCH]
    reports = book.tasks[BATCH].submissions
    # One failure report per assignment (each on its own uuid), none repeated.
    assert len({s["uuid"] for s in reports}) == len(reports) == len(reported)
    assert all(s["verdict"] == "failure report" for s in reports)
    assert len(rows) == len(reported) or len(rows) == len(reported) + 1


SESSION_ATTEMPTS = 5  # Scroll's sample configs
FAILURE_BACKOFF = 1.0


@pytest.mark.e2e
def test_devnet_an_unprovable_batch_is_proved_once_and_answered_at_once_afterwards(
        tmp_path: Path, params_dir: Path) -> None:
    cluster = LocalCluster(
        tmp_path, slots=demo_slots(tmp_path, chunk_slots=0, batch_slots=1),
        params_dir=params_dir,
        devnet_args=["--protocol", "http-h3", "--http-port", "0", "--no-chunk-tasks",
                     "--verifier", "stand-in", "--session-attempts", str(SESSION_ATTEMPTS)],
        # Polling and the failure backoff in test time (tests/README.md); the retry budget
        # is the production default.
        config_extra={"coordinator": {"protocol": "http-h3", "poll_interval_seconds": 0.5,
                                      "refused_interval_seconds": 1,
                                      "failure_backoff_seconds": FAILURE_BACKOFF}})
    garbage = AggProof(b"\x01" * 32, b"\x02" * 216, b"", b"\x03" * 32, 0).to_json()
    try:
        cluster.start()
        batch = cluster.devnet.control("push_task", {"type": 1, "sub_proofs": [garbage]})["id"]

        def spent(tasks: list[dict[str, Any]]) -> bool:
            return any(t["id"] == batch and t["state"] == "failed" for t in tasks)

        cluster.wait_tasks(spent, 300)
        task = next(t for t in cluster.tasks() if t["id"] == batch)
        logs = cluster.logs()
        rec = TaskLedger.from_url(cluster.redis.url).get("batch-gpu0", batch)
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
    dispatches, reports = task["dispatches"], task["submissions"]
    # Reported once per assignment, each on its own uuid, all with the first report's text.
    assert len(dispatches) == len(reports) == SESSION_ATTEMPTS
    assert [r["uuid"] for r in reports] == [d["uuid"] for d in dispatches]
    assert all(r["verdict"] == "failure report" for r in reports)
    first = reports[0]["error"]
    assert first.startswith("[deterministic] chunk proof 0 invalid"), first
    assert all(r["error"] == first for r in reports)
    # A backoff between get_tasks, doubling per consecutive report.
    for n, (report, after) in enumerate(zip(reports, dispatches[1:], strict=False)):
        assert after["at"] - report["at"] >= FAILURE_BACKOFF * 2 ** n * 0.9, (n, task)
    # The roller proved it once: one job, one started attempt, below session_attempts.
    assert rec is not None and rec.state is TaskState.FAILED
    assert rec.total_attempts == 1 < RetryConfig().max_task_attempts < SESSION_ATTEMPTS
    assert rec.assignment == SESSION_ATTEMPTS
    assert logs.count("job received") == 1, logs[-5000:]
    answered = re.findall(r"task answered at once without a job task_id=(\S+) "
                          r"slot=(\S+) reason=(.*)", logs)
    assert len(answered) == SESSION_ATTEMPTS - 1
    assert all(a[:2] == (batch, "batch-gpu0") and first in a[2] for a in answered)
