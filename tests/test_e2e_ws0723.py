"""End to end on the 2023-07 WebSocket variant: redis-server, `roller devnet --protocol
ws-2023-07` with the native verifier, the listener with `coordinator.protocol: ws-2023-07`,
one chunk and one batch worker with the real native prover. Four shipped mainnet blocks
make two chunk tasks and one batch task over their proofs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roller.devnet.traces import DEFAULT_TRACE_DIR
from roller.ledger import TaskLedger
from roller.localrun import LocalCluster, demo_slots

pytestmark = pytest.mark.e2e

BLOCKS = range(2640, 2644)


def verified(tasks: list[dict[str, Any]]) -> bool:
    return bool(tasks) and all(t["state"] == "verified" for t in tasks)


def test_listener_on_ws_2023_07_proves_chunks_and_batch(tmp_path: Path, params_dir: Path
                                                        ) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    for n in BLOCKS:
        (traces / f"block_{n}.json.gz").symlink_to(DEFAULT_TRACE_DIR / f"block_{n}.json.gz")
    slots = demo_slots(tmp_path, chunk_slots=1, batch_slots=1)
    cluster = LocalCluster(
        tmp_path, slots=slots, params_dir=params_dir,
        devnet_args=["--protocol", "ws-2023-07", "--trace-dir", str(traces),
                     "--chunk-size", "2", "--batch", "--verifier", "native",
                     "--dispatch-interval", "0.3"],
        config_extra={"coordinator": {"protocol": "ws-2023-07"}})
    try:
        cluster.start()
        cluster.wait_tasks(lambda ts: any(t["type"] == 1 for t in ts) and verified(ts), 600)
        ledger_view = cluster.devnet.ledger()
        assert ledger_view["protocol"] == "ws-2023-07"
        tasks = ledger_view["tasks"]
        assert sorted(t["type"] for t in tasks) == [0, 0, 1]
        for t in tasks:
            processed = [s for s in t["submissions"] if not s.get("rejection")]
            assert len(processed) == 1, f"task {t['id']} submitted {len(processed)} times"
            assert processed[0]["status"] == 0 and processed[0]["valid"] is True
            assert t["dispatch_count"] == 1
        ledger = TaskLedger.from_url(cluster.redis.url)
        for slot in slots:
            for task_id in ledger.task_ids(slot["name"]):
                rec = ledger.get(slot["name"], task_id)
                assert rec is not None and rec.outcome == "accepted"
                # The worker saw roller's own numbering: the slot's prove type.
                assert rec.task.type == slot["prove_type"]
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
