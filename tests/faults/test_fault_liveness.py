"""Fault rows 27a-27e: a dead worker never strands its task (roller.lifecycle's liveness rule).

Every row runs on kombu's production visibility timeout (86400 s): a SIGKILLed worker's
message stays in `unacked` for the whole test, so an answered task proves that the listener
re-drove it from the lease. Each row judges both ledgers (faultlib.FaultCluster.check): 0 lost,
0 unanswered, 0 proved twice per assignment, and records the seconds from the fault to the
coordinator's final answer, against the bound lease + grace + 2 sweeps + proof.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from faultlib import FaultCluster, start_cluster

from roller.config import load_config
from roller.lifecycle import LEASE_SECONDS, LIVENESS_GRACE_SECONDS
from roller.localrun import wait_for, worker_proc

pytestmark = pytest.mark.e2e

def proving(fc: FaultCluster, task_id: str) -> str:
    """Wait until the prover runs the task; returns the queue of the worker proving it."""
    rec = fc.wait_state(task_id, {"proving"})
    key = f"roller:task:{rec.slot}:{rec.task.id}"
    wait_for(lambda: fc.ledger.r.hget(key, "prove_started_at") is not None, 60, "the prover")
    return rec.queue


def still_unacked(fc: FaultCluster) -> int:
    """Messages kombu still holds for dead workers (production: it keeps them for a day)."""
    return int(fc.ledger.r.hlen("unacked"))


def redriven_at(fc: FaultCluster, task_id: str) -> float:
    """The wall time of the listener's `dead task re-driven` line for `task_id` (its `ts`)."""
    assert fc.c.listener is not None
    logs = fc.c.listener.output()  # every run of the listener appends to one log
    line = next(line for line in logs.splitlines()
                if f"dead task re-driven task_id={task_id}" in line)
    stamp = line.split("ts=", 1)[1].split(" level=", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def whole_worker_sigkill(fc: FaultCluster, fault: str, *, restart_listener: bool = False,
                         redis_restart: bool = False, main_only: bool = False) -> None:
    task_id = fc.push(3)
    queue = proving(fc, task_id)
    killed_at = time.monotonic()
    killed_wall = time.time()
    if redis_restart:
        fc.c.redis.stop()
    if main_only:
        # The main process alone (the kernel's OOM killer picks the largest, which is the pool
        # child on a GPU host, but either may go): the pool child is orphaned.
        os.kill(fc.worker(queue).pid, signal.SIGKILL)
        fc.worker(queue).kill()  # reaps it (the orphaned child keeps its own course)
    else:
        fc.worker(queue).kill()
    if restart_listener:
        assert fc.c.listener is not None
        fc.c.listener.kill()
    if redis_restart:
        fc.c.redis.start()
    if restart_listener:
        fc.c.start_listener()
    fc.c.start_worker(queue)
    recover = fc.wait_final([task_id], 300) - killed_at
    row = fc.check(fault, [task_id], repetitions=1, recover_s=[recover],
                   crashes={task_id: 1})
    rec = fc.rec(task_id)
    assert rec is not None and rec.state == "delivered", rec
    interval = load_config(fc.c.config).reconcile_interval_seconds
    bound = LEASE_SECONDS + LIVENESS_GRACE_SECONDS + 2 * interval
    redrive = redriven_at(fc, task_id) - killed_wall
    # One second of slack: the sweeps' own time and the log's clock.
    assert redrive <= bound + 1, f"re-driven {redrive:.1f} s after the kill, bound {bound:.0f} s"
    row.notes.append(f"re-driven {redrive:.0f} s and answered {recover:.0f} s after the kill "
                     f"(bound: lease {LEASE_SECONDS} s + grace {LIVENESS_GRACE_SECONDS:.0f} s "
                     f"+ 2 x {interval:.0f} s sweeps = {bound:.0f} s, then the proof); kombu "
                     f"still holds {still_unacked(fc)} unacked message(s)")


@pytest.mark.faults
def test_main_process_only_sigkill(fc: FaultCluster) -> None:
    whole_worker_sigkill(fc, "27a worker main process SIGKILL + restart", main_only=True)


@pytest.mark.faults
def test_whole_worker_and_listener_sigkill(fc: FaultCluster) -> None:
    whole_worker_sigkill(fc, "27b worker and listener SIGKILL + restart",
                         restart_listener=True)


@pytest.mark.faults
def test_worker_sigkill_while_redis_restarts(fc: FaultCluster) -> None:
    whole_worker_sigkill(fc, "27c worker SIGKILL while Redis restarts", redis_restart=True)


@pytest.mark.faults_smoke
def test_two_workers_on_one_queue_while_a_lease_is_lost(fc: FaultCluster) -> None:
    """The worker proving a task freezes (SIGSTOP) past its lease; the listener re-drives the
    task and a second worker on the same queue proves it. Thawed, the first finds another
    attempt holding the task and stores nothing: one answer, one delivery."""
    second = None
    frozen = 0
    try:
        task_id = fc.push(3)
        queue = proving(fc, task_id)
        rec = fc.rec(task_id)
        assert rec is not None
        frozen = int(rec.worker.rsplit(":", 1)[1])  # the pool process proving it
        first_owner = rec.owner
        os.kill(frozen, signal.SIGSTOP)
        stopped_at = time.monotonic()
        # A second worker on the same queue (an upgrade's overlap, a shared broker).
        second = worker_proc(fc.c.config, queue, fc.c.workdir, fc.c.env,
                             name=f"{queue}-b").start()
        fc.extra_workers.append(second)
        wait_for(lambda: (r := fc.rec(task_id)) is not None and r.owner != first_owner
                 and r.state in ("proving", "proved", "delivered"), 240,
                 "another attempt to take the task over", interval=0.5)
        os.kill(frozen, signal.SIGCONT)
        frozen = 0
        recover = fc.wait_final([task_id], 240) - stopped_at
        wait_for(lambda: "answer not stored" in "".join(
            w.output() for w in (*fc.c.workers.values(), second)), 120,
            "the thawed attempt to finish without storing")
        rec = fc.rec(task_id)
        assert rec is not None and rec.state == "delivered" and rec.total_attempts == 2
        row = fc.check("27d two workers on one queue, a lease lost (SIGSTOP)", [task_id],
                       repetitions=1, recover_s=[recover], crashes={task_id: 1})
        row.notes.append(f"answered {recover:.0f} s after the freeze; the thawed attempt "
                         "stored nothing")
    finally:
        if frozen:
            os.kill(frozen, signal.SIGCONT)
        if second is not None:
            second.stop()


@pytest.mark.faults
def test_a_frozen_worker_keeps_its_proof(fc: FaultCluster) -> None:
    """Row 27f: the one worker of a queue frozen (SIGSTOP) 70 s mid-proof, past its lease:
    the listener re-drives the task, and the new job waits in the queue behind the frozen
    one. Thawed, the job takes its lease back (no other attempt started) and stores its
    proof; the waiting job finds the task answered: proved once, answered once."""
    frozen = 0
    try:
        task_id = fc.push(3)
        proving(fc, task_id)
        rec = fc.rec(task_id)
        assert rec is not None
        drive = rec.drive
        frozen = int(rec.worker.rsplit(":", 1)[1])  # the pool process proving it
        os.kill(frozen, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_for(lambda: (r := fc.rec(task_id)) is not None and r.drive > drive, 120,
                 "the listener to re-drive the frozen task", interval=0.5)
        wait_for(lambda: time.monotonic() - stopped_at >= 70, 75, "a 70 s freeze", 1)
        os.kill(frozen, signal.SIGCONT)
        frozen = 0
        recover = fc.wait_final([task_id], 240) - stopped_at
    finally:
        if frozen:
            os.kill(frozen, signal.SIGCONT)
    logs = "".join(w.output() for w in fc.c.workers.values())
    rec = fc.rec(task_id)
    assert rec is not None and rec.state == "delivered" and rec.total_attempts == 1, rec
    assert fc.proving_runs(task_id, logs) == 1
    assert f"lease had run out and was taken back task_id={rec.task.id}" in logs
    row = fc.check("27f a worker frozen 70 s mid-proof, then resumed", [task_id],
                   repetitions=1, recover_s=[recover])
    row.notes.append(f"answered {recover:.0f} s after the freeze; the thawed job stored its "
                     "proof, the re-driven one proved nothing")


@pytest.mark.faults_smoke
def test_smoke_whole_worker_sigkill(fc: FaultCluster) -> None:
    whole_worker_sigkill(fc, "3 whole worker SIGKILL + restart")


@pytest.mark.faults
def test_whole_worker_sigkill_on_production_defaults(
        tmp_path_factory: pytest.TempPathFactory, params_dir: Path, fault_lib: Path) -> None:
    """Row 27e: no override at all (reconcile interval 5 s, production retries): the bound
    an operator gets, 35 s from the kill to the re-drive."""
    cluster = start_cluster(tmp_path_factory.mktemp("production"), params_dir, fault_lib,
                            chunk_slots=1, production=True)
    try:
        pc = FaultCluster(cluster).wait_registered()
        whole_worker_sigkill(pc, "27e worker SIGKILL, production defaults")
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


@pytest.mark.faults
def test_a_cpu_saturated_host_is_not_taken_for_dead(fc: FaultCluster) -> None:
    """Row 27g: every core busy (two spinning processes per core, at the workers' priority)
    for 5 minutes while the workers prove task after task: no live job misses its lease,
    nothing is re-driven, every task answered once."""
    minutes = float(os.environ.get("ROLLER_SATURATION_MINUTES", "5"))
    assert fc.c.listener is not None
    before = fc.c.listener.output().count("dead task re-driven")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(2 * (os.cpu_count() or 1))]
    ids: list[str] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            batch = [fc.push(3) for _ in fc.queues]
            ids += batch
            fc.wait_final(batch, 600)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    redriven = fc.c.listener.output().count("dead task re-driven") - before
    assert redriven == 0, f"{redriven} live task(s) taken for dead on a saturated host"
    row = fc.check("27g every core busy for 5 minutes", ids, repetitions=1,
                   recover_s=[0.0])
    row.notes.append(f"{len(ids)} tasks proved with {len(spinners)} spinning processes on "
                     f"{os.cpu_count()} cores for {minutes:g} min: none re-driven")
