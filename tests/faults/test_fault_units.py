"""Unit tests of the hardening the fault suite asked for (fast; no cluster)."""

from __future__ import annotations

import os
import subprocess
import sys

from roller.ledger import TaskLedger, owner_gone, process_owner


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
