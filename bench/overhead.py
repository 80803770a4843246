"""End-to-end task time / bare FFI prove time, on the shipped mainnet traces.

One run: first the whole roller (devnet coordinator -> listener -> Redis -> Celery worker ->
trace fetch -> native prover -> outbox -> signed submit -> coordinator verification) proves
chunk tasks; then this process calls the same library's gen_chunk_proof directly on the
same traces, with the same warm circuit cache. Prints both times per chunk and the ratio.

    python bench/overhead.py [--chunks 4] [--blocks 4]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from common import bench_parser, one_slot_cluster

from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.ffi import load_prover
from roller.ledger import TaskLedger
from roller.localrun import wait_for


def main() -> int:
    parser = bench_parser(__doc__, "overhead")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=4, help="blocks per chunk")
    args = parser.parse_args()
    files = sorted(DEFAULT_TRACE_DIR.glob("block_*.json.gz"))
    traces = [json.loads(read_trace_file(f)) for f in files[: args.chunks * args.blocks]]
    chunks = [traces[i:i + args.blocks] for i in range(0, len(traces), args.blocks)]

    cluster, slot = one_slot_cluster(args, "native")
    e2e = []
    try:
        cluster.start()
        ledger = TaskLedger.from_url(cluster.redis.url)
        warm = cluster.devnet.control("push_task", {"type": 0, "block_hashes": [
            chunks[0][0]["header"]["hash"]]})["id"]
        wait_for(lambda: (r := ledger.get(slot, warm)) is not None and r.state == "delivered",
                 600, "the warm-up task")
        for chunk in chunks:
            hashes = [t["header"]["hash"] for t in chunk]
            task_id = cluster.devnet.control("push_task", {"type": 0, "block_hashes": hashes})["id"]
            wait_for(lambda tid=task_id: any(t["id"] == tid and t["state"] == "verified"
                                             for t in cluster.tasks()), 600, "verification")
            raw = ledger.r.hgetall(f"roller:task:{slot}:{task_id}")
            e2e.append(float(raw["finished_at"]) - float(raw["received_at"]))
    finally:
        cluster.stop()

    prover = load_prover(None, str(args.params_dir.resolve()))
    prover.gen_chunk_proof(json.dumps(chunks[0][:1]))  # same warm-up as the roller had
    bare = []
    for chunk in chunks:
        started = time.perf_counter()
        prover.gen_chunk_proof(json.dumps(chunk))
        bare.append(time.perf_counter() - started)

    print(f"end-to-end vs bare FFI, {len(chunks)} chunks of {args.blocks} mainnet blocks")
    print(f"{'chunk':<8}{'e2e s':>10}{'bare s':>10}{'ratio':>8}")
    for i, (a, b) in enumerate(zip(e2e, bare, strict=True)):
        print(f"{i:<8}{a:>10.2f}{b:>10.2f}{a / b:>8.2f}")
    print(f"{'mean':<8}{statistics.mean(e2e):>10.2f}{statistics.mean(bare):>10.2f}"
          f"{statistics.mean(e2e) / statistics.mean(bare):>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
