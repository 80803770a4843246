"""Row 28: a GPU's silent data corruption. The workers run the fault build with
`ROLLER_PROVER_FAULT=corrupt-once` (the first proof of each pool process comes back with one
bit of its proof bytes flipped: well-formed, no error, not a valid proof) or `corrupt` (every
proof). Judged from both ledgers: a corrupted proof is never submitted (the coordinator's
native verifier never sees one), a retried proof is accepted, a task whose every proof fails
its check is answered with a transient report, and (28b) a worker whose proofs keep failing
fences its GPU: it stops consuming and its slot asks for no more work.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
import requests
from faultlib import FaultCluster
from prometheus_client.parser import text_string_to_metric_families
from test_faults import worker_logs, worker_metric

from roller.localrun import wait_for
from roller.worker.gpu_guard import SELF_CHECK_FENCE_NOTE

pytestmark = pytest.mark.e2e

REPORT = "[transient] proof failed its own check: proof does not verify"


def no_invalid_submission(task: dict[str, Any]) -> None:
    """Every submission the coordinator processed is a valid proof or a failure report."""
    bad = [s for s in task["submissions"] if s["status"] == 0 and s.get("valid") is not True]
    assert not bad, f"a proof that does not verify reached the coordinator: {bad}"


def reported(fc: FaultCluster, task_id: str) -> str:
    """The failure report the coordinator received for the task (our final record keeps no
    failure answer: roller.ledger.records, memory rule)."""
    [sub] = fc.devnet_tasks()[task_id]["submissions"]
    assert sub["status"] != 0, sub
    return str(sub["error"])


def corrupted(fc: FaultCluster, task_id: str) -> int:
    rec = fc.rec(task_id)
    assert rec is not None
    return worker_logs(fc).count(f"proof failed its own check, not stored task_id={rec.task.id}")


def consuming(fc: FaultCluster, queue: str) -> float | None:
    """`roller_worker_consuming{worker, queue}` of the queue's worker (its Celery name is
    `<queue>@<host>`, roller.localrun), from its endpoint; None without such a series or
    endpoint."""
    urls = re.findall(r"metrics endpoint listening what=workers url=(\S+)",
                      fc.worker(queue).output())
    assert urls, f"no metrics endpoint in the {queue} worker's log"
    want = {"worker": f"{queue}@{socket.gethostname()}", "queue": queue}
    try:  # the log may still name the endpoint of the worker before a restart
        text = requests.get(urls[-1], timeout=10).text
    except requests.RequestException:
        return None
    values = [sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples
              if sample.name == "roller_worker_consuming"
              and all(sample.labels.get(k) == v for k, v in want.items())]
    return values[0] if values else None


def restore(fc: FaultCluster) -> None:
    """Healthy workers again: the fence is cleared at their start, the slots register."""
    fc.restart_workers({})
    fc.wait_registered()


@pytest.mark.faults  # ~60 s on a loaded machine: the full suite, not make test
def test_a_corrupted_proof_is_proved_again_and_never_submitted(fc: FaultCluster) -> None:
    """`corrupt-once`: the first proof of the worker is corrupted; the job's own check
    catches it before the store, proves again on the same worker, and the coordinator sees
    one submission: the good proof."""
    try:
        fc.restart_workers({"ROLLER_PROVER_FAULT": "corrupt-once"})
        started = time.monotonic()
        task_id = fc.push()
        recover = fc.wait_final([task_id], 240) - started
        rec = fc.rec(task_id)
        assert rec is not None and rec.outcome == "accepted" and rec.attempts == 1, rec
        assert corrupted(fc, task_id) == 1
        assert worker_metric(fc, rec.queue, "roller_self_check_failures_total",
                             slot=rec.slot, type="chunk") == 1
    finally:
        restore(fc)
    task = fc.devnet_tasks()[task_id]
    no_invalid_submission(task)
    assert task["state"] == "verified" and len(task["submissions"]) == 1, task
    row = fc.check("28a corrupted proof (GPU silent data corruption)", [task_id],
                   repetitions=1, recover_s=[recover])
    row.notes.append("corrupt-once: caught by the worker's check, re-proved, accepted")


@pytest.mark.faults
def test_a_gpu_whose_proofs_keep_failing_is_fenced(fc: FaultCluster) -> None:
    """`corrupt`: every proof corrupted. The first task on a worker spends its 3 proofs
    (no fence: it could be the task) and is answered with the transient report, no proof
    submitted; the first failure on its next task fences the GPU. Tasks are pushed one at a
    time until a worker has had two (two workers: three tasks at most)."""
    ids: list[str] = []
    per_queue: dict[str, int] = {}
    fenced = ""
    started = time.monotonic()
    try:
        fc.restart_workers({"ROLLER_PROVER_FAULT": "corrupt"})
        for queue in fc.queues:
            wait_for(lambda q=queue: consuming(fc, q) == 1, 120, f"{queue}'s worker to consume")
        for _ in range(len(fc.queues) + 1):
            task_id = fc.push()
            ids.append(task_id)
            fc.wait_final([task_id], 240)
            rec = fc.rec(task_id)
            assert rec is not None and reported(fc, task_id).startswith(REPORT)
            per_queue[rec.queue] = per_queue.get(rec.queue, 0) + 1
            if per_queue[rec.queue] == 1:  # a worker's first task: its whole budget
                assert corrupted(fc, task_id) == 3 and rec.attempts == 1, rec
            if per_queue[rec.queue] == 2:
                fenced = rec.queue
                break
        assert fenced, per_queue
        fenced_at = time.monotonic() - started
        # The second task's first failure fenced: that job made one proof, not three.
        assert corrupted(fc, ids[-1]) == 1
        assert fc.ledger.fenced(fenced) == SELF_CHECK_FENCE_NOTE
        log = fc.worker(fenced).output()
        assert "GPU fenced, the worker stops taking jobs: 4 consecutive proofs over 2 tasks " \
               "failed their own check" in log and "reason=self_check" in log, log[-3000:]
        # The parent (remote control) stopped consuming: its gauge says so.
        wait_for(lambda: consuming(fc, fenced) == 0, 30, "the worker to stop consuming")
        # The slot asks for no more work: a task now goes to another slot, never this one.
        slot = next(s["name"] for s in fc.c.slots if s["queue"] == fenced)
        wait_for(lambda: fc.ledger.session(slot).get("state") == "fenced", 60,
                 "the fenced slot to leave")
    finally:
        restore(fc)
    tasks = fc.devnet_tasks()
    for task_id in ids:
        no_invalid_submission(tasks[task_id])
    row = fc.check("28b every proof corrupted: reported, GPU fenced", ids, repetitions=1,
                   recover_s=[fenced_at])
    row.notes.append(f"fenced {fenced} after {len(ids)} tasks, {fenced_at:.0f} s; "
                     "no corrupted proof submitted")
