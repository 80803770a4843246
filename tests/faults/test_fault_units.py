"""Unit tests of the hardening the fault suite asked for (fast; no cluster)."""

from __future__ import annotations

import os
import subprocess
import sys

from roller.ledger import TaskLedger, TaskState, owner_gone, process_owner
from roller.protocol.messages import ProofDetail, RespStatus, TaskMsg

TASK = TaskMsg(id="0x" + "ee" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_owner_gone() -> None:
    host = process_owner().split(":")[0]
    assert not owner_gone(process_owner())
    assert not owner_gone(f"{process_owner()}:123.4")
    assert owner_gone(f"{host}:{dead_pid()}:123.4")
    assert not owner_gone(f"other-host:{dead_pid()}")  # another host: only the TTL tells
    assert not owner_gone("1")


def test_lease_of_a_dead_process_is_taken_over(redis_url: str) -> None:
    ledger = TaskLedger.from_url(redis_url)
    host = process_owner().split(":")[0]
    assert ledger.acquire_lease("s", "t", f"{host}:{dead_pid()}:1.0", 30)
    assert ledger.acquire_lease("s", "t", f"{host}:{os.getpid()}:2.0", 30)
    # A lease this process could not release (Redis was down) does not block its next job.
    assert ledger.acquire_lease("s", "t", f"{host}:{os.getpid()}:3.0", 30)
    # Another live process keeps it (pid 1 always runs).
    ledger.r.set("roller:lock:s:t", f"{host}:1:4.0")
    assert not ledger.acquire_lease("s", "t", f"{host}:{os.getpid()}:5.0", 30)


def test_submit_lock_is_released_by_its_owner_only(redis_url: str) -> None:
    ledger = TaskLedger.from_url(redis_url)
    host = process_owner().split(":")[0]
    assert ledger.acquire_submit("s", "t", 60)
    ledger.r.set("roller:submitting:s:t3", f"{host}:1")  # another live process submits
    assert not ledger.acquire_submit("s", "t3", 60)
    ledger.r.set("roller:submitting:s:t2", f"{host}:{dead_pid()}")
    assert ledger.acquire_submit("s", "t2", 60)  # its holder was killed mid-submit
    ledger.release_submit("s", "t3")  # not ours: kept
    assert ledger.r.get("roller:submitting:s:t3") == f"{host}:1"
    ledger.release_submit("s", "t")
    assert ledger.r.get("roller:submitting:s:t") is None


def test_expired_task_assigned_again_is_reopened(redis_url: str) -> None:
    ledger = TaskLedger.from_url(redis_url)
    ledger.record_new("s", TASK, now=1.0)
    assert ledger.reopen_expired("s", TASK.id) == 0  # not expired: a plain duplicate
    ledger.finish("s", TASK.id, TaskState.EXPIRED, "session window passed")
    assert ledger.reopen_expired("s", TASK.id, now=50.0) == 1
    rec = ledger.get("s", TASK.id)
    assert rec is not None and rec.state == TaskState.RECEIVED and rec.received_at == 50.0
    detail = ProofDetail(id=TASK.id, type=0, status=RespStatus.ERROR, proof=None, error="x")
    ledger.store_proof("s", detail, None)
    ledger.finish("s", TASK.id, TaskState.EXPIRED, "session window passed")
    assert ledger.outbox_size() == 0
    assert ledger.reopen_expired("s", TASK.id) == 2  # the kept proof goes back to the outbox
    assert ledger.outbox_size() == 1


def test_mark_queued_never_moves_a_task_back(redis_url: str) -> None:
    ledger = TaskLedger.from_url(redis_url)
    assert ledger.record_new("s", TASK)
    ledger.start_attempt("s", TASK.id, "w", "gpu0")  # the worker was faster than the listener
    ledger.mark_queued("s", TASK.id)
    rec = ledger.get("s", TASK.id)
    assert rec is not None and rec.state == TaskState.PROVING
    other = TaskMsg(id="0x" + "ef" * 32, type=0, block_hashes=TASK.block_hashes, sub_proofs=())
    ledger.record_new("s", other)
    ledger.mark_queued("s", other.id)
    rec = ledger.get("s", other.id)
    assert rec is not None and rec.state == TaskState.QUEUED
