"""Faults 20-26: the task lifecycle (issue "every assigned task is answered"), and two
identities on one GPU queue (issue 16).

Each row judges both ledgers per assignment: 0 lost, 0 proved twice. Rows 20-25 run in
`make test` (`faults_smoke`): each is one or two tasks on the shared fault cluster. Row 26
needs a cluster of its own with `identities_per_gpu` 2 (about 90 s): `make faults`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from faultlib import FaultCluster, start_cluster

from roller.broker import waiting_messages
from roller.ledger import job_id
from roller.localrun import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults_smoke]

FAULTS_DIR = Path(__file__).resolve().parent


def holder_pk(fc: FaultCluster, task_id: str) -> str:
    """The key the coordinator last assigned `task_id` to."""
    return str(fc.devnet_tasks()[task_id]["dispatches"][-1]["to"][0]["pk"])


def requeue_and_wait(fc: FaultCluster, task_id: str) -> float:
    """An operator's re-queue of a finished task to the same key; seconds until both
    ledgers show the new assignment answered."""
    pk = holder_pk(fc, task_id)
    before = fc.rec(task_id)
    assert before is not None
    hit = time.monotonic()
    fc.c.devnet.control("requeue", {"id": task_id, "pk": pk})

    def answered() -> bool:
        task = fc.devnet_tasks()[task_id]
        rec = fc.rec(task_id)
        return (rec is not None and rec.assignment == before.assignment + 1
                and rec.state in ("delivered", "failed", "refused")
                and len(task["submissions"]) == len(task["dispatches"])
                and task["state"] in ("verified", "failed"))

    wait_for(answered, 120, f"task {task_id[:10]} answered again", interval=0.1)
    return time.monotonic() - hit


# -- 20. Re-assignment of the same task id to the same key -------------------------------------

def test_reassignment_after_a_failure_report_is_proved_again(fc: FaultCluster) -> None:
    # Final at once: traces of another block are never retried (a null trace would be, for
    # the whole trace budget).
    fc.c.devnet.control("l2_fault", {"mode": "otherblock"})
    try:
        task_id = fc.push()
        fc.wait_final([task_id])
    finally:
        fc.c.devnet.control("l2_fault", {"mode": "none"})
    rec = fc.rec(task_id)
    assert rec is not None and rec.state == "failed" and rec.outcome.startswith("reported")
    seconds = requeue_and_wait(fc, task_id)
    rec = fc.rec(task_id)
    assert rec is not None and rec.state == "delivered" and rec.outcome == "accepted"
    fc.check("20a re-assigned after a failure report", [task_id], repetitions=1,
             recover_s=[seconds])


def test_reassignment_after_an_accepted_proof_resubmits_it(fc: FaultCluster) -> None:
    task_id = fc.push()
    fc.wait_final([task_id])
    seconds = requeue_and_wait(fc, task_id)
    rec = fc.rec(task_id)
    assert rec is not None and rec.state == "delivered" and rec.total_attempts == 1
    subs = fc.devnet_tasks()[task_id]["submissions"]
    assert [s["outcome"] for s in subs] == ["valid", "valid"]
    fc.check("20b re-assigned after an accepted proof (kept proof resubmitted)", [task_id],
             repetitions=1, recover_s=[seconds])


# -- 21. Broker down when a notification arrives ---------------------------------------------

def test_broker_down_during_send(fc: FaultCluster) -> None:
    assert fc.c.listener is not None
    fc.c.redis.stop()
    try:
        task_id = fc.push()
        wait_for(lambda: f"task held in memory and on disk task_id={task_id}"
                 in fc.c.listener.output(), 60, "the listener to keep the task")
    finally:
        fc.c.redis.start()
    back = time.monotonic()
    fc.wait_final([task_id])
    recover = time.monotonic() - back
    later = fc.push()  # the slot thread lived through it
    fc.wait_final([later])
    assert fc.c.listener.alive()
    fc.check("21 broker down during send", [task_id, later], repetitions=1, recover_s=[recover])


def test_listener_stopped_while_it_holds_a_task(fc: FaultCluster) -> None:
    """Row 21b: Redis down, a task arrives, the listener is stopped (SIGTERM) holding it: it
    names the task and keeps it on disk (roller.spool); the coordinator never sends it again
    (spec 5.3), so the next listener records it from there once Redis is back."""
    listener = fc.c.listener
    assert listener is not None
    fc.c.redis.stop()
    try:
        task_id = fc.push()
        wait_for(lambda: f"task held in memory and on disk task_id={task_id}"
                 in listener.output(),
                 60, "the listener to keep the task")
        listener.stop()
        assert "tasks held in memory not recorded at stop, kept on disk" in listener.output()
        assert task_id in listener.output().split("kept on disk")[-1]
    finally:
        fc.c.redis.start()
    back = time.monotonic()
    fc.c.start_listener()
    fc.wait_final([task_id])
    assert fc.c.listener is not None
    assert "tasks held by the previous listener, to be recorded" in fc.c.listener.output()
    fc.check("21b listener stopped holding a task (Redis down)", [task_id], repetitions=1,
             recover_s=[time.monotonic() - back])


def test_task_received_as_the_connection_drops(fc: FaultCluster) -> None:
    """Row 21c: the listener frozen (SIGSTOP) while the coordinator sends it a task and then
    goes down, so the task's frame and the connection's close arrive together; thawed, the
    listener records the task at once, during the outage (roller.listener.intake), not at
    its next session; SIGKILLed in the outage, its successor answers it. The 2023 WebSocket
    coordinator never sends an assigned task again (spec 5.3): the record is the only copy."""
    listener = fc.c.listener
    assert listener is not None
    outage = 30
    listener.send_signal(signal.SIGSTOP)
    try:
        task_id = fc.push()
        fc.c.devnet.control("dispatch_now", {})
        wait_for(lambda: bool(fc.devnet_tasks()[task_id]["dispatches"]), 10,
                 "the coordinator to send the task", interval=0.05)
        fc.c.devnet.control("stop_for", {"seconds": outage})
        down_at = time.monotonic()
    finally:
        listener.send_signal(signal.SIGCONT)
    wait_for(lambda: f"task received task_id={task_id}" in listener.output(), 10,
             "the thawed listener to read the task", interval=0.05)
    wait_for(lambda: fc.rec(task_id) is not None, 5, "the task recorded during the outage",
             interval=0.05)
    assert time.monotonic() - down_at < outage, "recorded only after the outage"
    listener.kill()
    fc.c.start_listener()
    recover = fc.wait_final([task_id], 240) - down_at
    fc.check("21c task received as the connection drops, listener SIGKILLed in the outage",
             [task_id], repetitions=1, recover_s=[recover])


# -- 22. A job that raises -------------------------------------------------------------------

def test_job_that_raises_is_redriven(fc: FaultCluster, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(FAULTS_DIR), "ROLLER_TEST_RAISE_DIR": str(tmp_path)}
    for queue in fc.queues:
        fc.worker(queue).stop()
    for queue in fc.queues:
        fc.c.start_worker(queue, env, app="raising_worker")
    try:
        redriven = fc.listener_metric("roller_tasks_redriven_total")
        started = time.monotonic()
        task_id = fc.push()
        fc.wait_final([task_id], 180)
        recover = time.monotonic() - started
        redriven = fc.listener_metric("roller_tasks_redriven_total") - redriven
    finally:
        fc.restart_workers({})
    rec = fc.rec(task_id)
    assert rec is not None and rec.outcome == "accepted" and rec.total_attempts == 2
    assert redriven == 1  # the listener's reconciliation sent it again
    fc.check("22 job raises (re-driven)", [task_id], repetitions=1, recover_s=[recover])


# -- 23. A worker whose prover library is missing ----------------------------------------------

def test_worker_without_prover_consumes_nothing(fc: FaultCluster) -> None:
    for queue in fc.queues:
        fc.worker(queue).stop()
    broken = [fc.c.start_worker(q, {"ROLLER_PROVER_LIB": "/nonexistent/libroller_prover.so"})
              for q in fc.queues]
    try:
        for proc in broken:
            assert proc.popen is not None
            assert proc.popen.wait(120) == 3, proc.output()[-2000:]
            assert "roller worker: prover unusable:" in proc.output()
        ids = [fc.push() for _ in fc.queues]
        recs = [fc.wait_state(task_id, {"queued"}) for task_id in ids]
        # Every worker has exited (above): the jobs wait in the broker, nobody holds them.
        for rec in recs:
            waiting = waiting_messages(fc.ledger.r, fc.queues[fc.slot_names.index(rec.slot)])
            assert job_id(rec.slot, rec.task.id, rec.drive) in waiting
        assert all(fc.state(t) == "queued" for t in ids)
    finally:
        fc.restart_workers({})
    back = time.monotonic()
    fc.wait_final(ids)
    for task_id in ids:
        rec = fc.rec(task_id)
        assert rec is not None and rec.outcome == "accepted" and rec.total_attempts == 1
    fc.check("23 worker with a missing prover library", ids, repetitions=1,
             recover_s=[time.monotonic() - back])


# -- 24. Redis killed between record and send --------------------------------------------------

def test_redis_killed_right_after_the_record(fc: FaultCluster) -> None:
    task_id = fc.push()
    fc.wait_state(task_id, {"received", "queued", "proving"}, 60)
    hit = time.monotonic()
    assert fc.c.redis.proc is not None
    fc.c.redis.proc.send_signal(signal.SIGKILL)
    fc.c.redis.proc.stop()
    fc.c.redis.start()
    fc.wait_final([task_id])
    fc.check("24 redis SIGKILL right after the record", [task_id], repetitions=1,
             recover_s=[time.monotonic() - hit], crashes={task_id: 1})


# -- 25. The README's listener command: --config only, broker on a non-default port ------------

def test_listener_with_config_only(fc: FaultCluster) -> None:
    listener = fc.c.listener
    assert listener is not None
    environ = Path(f"/proc/{listener.pid}/environ").read_bytes().split(b"\0")
    assert not any(v.startswith(b"ROLLER_CONFIG=") for v in environ)
    assert fc.c.redis.port != 6379
    task_id = fc.push()
    started = time.monotonic()
    fc.wait_final([task_id])
    fc.check("25 listener with --config only, broker on another port", [task_id],
             repetitions=1, recover_s=[time.monotonic() - started])


# -- 26. Two identities on one GPU queue: the worker killed while the second task waits -------

@pytest.mark.faults
def test_worker_killed_while_another_identitys_task_waits(
        tmp_path_factory: pytest.TempPathFactory, params_dir: Path, fault_lib: Path) -> None:
    """identities_per_gpu 2: both identities' tasks sit on the one GPU queue; the worker
    dies proving the first while the second waits behind it. Both are answered (the waiting
    job is taken by the restarted worker; the killed one's lease runs out and the listener
    re-drives it, while kombu still holds its message for a day) and neither is proved
    twice."""
    cluster = start_cluster(tmp_path_factory.mktemp("two-ids"), params_dir, fault_lib,
                            chunk_slots=1, config_extra={"identities_per_gpu": 2})
    try:
        wc = FaultCluster(cluster).wait_registered()
        assert len(wc.slot_names) == 2 and wc.queues == ["gpu0"]
        wc.worker("gpu0").stop()  # both tasks queue up before the worker takes one
        ids = [wc.push(3), wc.push(3)]
        for task_id in ids:
            wc.wait_state(task_id, {"queued"})
        assert {wc.rec(t).slot for t in ids} == set(wc.slot_names)  # type: ignore[union-attr]
        wc.c.start_worker("gpu0")
        wait_for(lambda: sorted(wc.state(t) for t in ids) == ["proving", "queued"], 180,
                 "one task proving while the other waits", interval=0.05)
        proving = next(t for t in ids if wc.state(t) == "proving")
        killed_at = time.monotonic()
        wc.worker("gpu0").kill()
        wc.c.start_worker("gpu0")
        recover = wc.wait_final(ids, 240) - killed_at
        for task_id in ids:
            rec = wc.rec(task_id)
            assert rec is not None and rec.state == "delivered", (task_id, rec)
        wc.check("26 worker SIGKILL, 2nd identity's task queued on the GPU", ids,
                 repetitions=1, recover_s=[recover], crashes={proving: 1})
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
