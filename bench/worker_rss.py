"""Memory of a warm Celery worker across consecutive proofs.

Runs a one-slot cluster (real `celery -A roller worker -Q gpu0`, native prover) and proves
`--tasks` chunk tasks one after another; after each, prints the resident memory of the
worker's pool child (the process that holds the prover). A leak shows as steady growth.

    python bench/worker_rss.py [--tasks 20] [--blocks 2]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import bench_parser, one_slot_cluster

from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.ledger import TaskLedger
from roller.localrun import wait_for


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pool_child(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return int(children[0])


def main() -> int:
    parser = bench_parser(__doc__, "worker-rss")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=2, help="blocks per chunk task")
    args = parser.parse_args()
    files = sorted(DEFAULT_TRACE_DIR.glob("block_*.json.gz"))
    hashes = [json.loads(read_trace_file(f))["header"]["hash"] for f in files]
    cluster, slot = one_slot_cluster(args, "stand-in")
    try:
        cluster.start()
        ledger = TaskLedger.from_url(cluster.redis.url)
        worker = cluster.workers["gpu0"].pid
        print(f"{'proof':>5}{'child pid':>11}{'RSS MB':>9}")
        for i in range(args.tasks):
            start = (i * args.blocks) % (len(hashes) - args.blocks)
            task_id = cluster.devnet.control("push_task", {
                "type": 0, "block_hashes": hashes[start:start + args.blocks]})["id"]
            wait_for(lambda tid=task_id: (r := ledger.get(slot, tid)) is not None
                     and r.state == "delivered", 600, f"proof {i + 1}")
            child = pool_child(worker)
            print(f"{i + 1:>5}{child:>11}{rss_mb(child):>9.0f}", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
