"""`make native` while a worker proves: the library is installed by rename, so the worker
keeps its mapping of the old file and the proof completes (a `cp` over the loaded file
rewrote the same inode under it: a SIGBUS mid-proof, a SIGSEGV in the loader)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
from roller.ffi.native import _PACKAGE_LIB
from roller.ledger import TaskLedger
from roller.localrun import LocalCluster, demo_slots, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BLOCKS = tuple(range(2650, 2660))  # ten blocks: a proof long enough to overlap the install


def test_make_native_while_a_worker_proves(tmp_path: Path, params_dir: Path) -> None:
    assert _PACKAGE_LIB.exists(), "make native installs the library the workers load"
    before = _PACKAGE_LIB.stat().st_ino
    cluster = LocalCluster(tmp_path, slots=demo_slots(tmp_path, chunk_slots=1, batch_slots=0),
                           params_dir=params_dir, devnet_args=["--no-chunk-tasks"])
    try:
        cluster.start()
        served = load_trace_dir(DEFAULT_TRACE_DIR).by_number
        hashes = [served[n].hash for n in BLOCKS]
        task_id = str(cluster.devnet.control("push_task", {"type": 0,
                                                           "block_hashes": hashes})["id"])
        ledger = TaskLedger.from_url(cluster.redis.url)
        slot = cluster.slots[0]["name"]

        def started() -> bool:
            rec = ledger.get(slot, task_id)
            return rec is not None and ledger.r.hget(
                f"roller:task:{slot}:{task_id}", "prove_started_at") is not None

        wait_for(started, 300, "the proof to start", 0.1)
        subprocess.run(["make", "--no-print-directory", "native"], cwd=REPO, check=True,
                       capture_output=True, timeout=600)
        assert _PACKAGE_LIB.stat().st_ino != before  # a new file, renamed over the old
        cluster.wait_tasks(lambda ts: any(t["id"] == task_id and t["state"] == "verified"
                                          for t in ts), 300)
        worker = cluster.workers[cluster.slots[0]["queue"]]
        assert worker.alive()
        assert "signal 7" not in worker.output() and "SIGBUS" not in worker.output()
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
