"""Dispatch latency per coordinator generation: task received -> prover call starts.

Measured side by side in one run, for each generation (the 2023 WS protocol, its 2023-07
variant and the HTTP generations h1..h4 of the devnet), on the same tasks: our path
(listener -> Redis -> Celery worker -> trace fetch -> prover) and a seed-style loop that
polls its task store every 3 s and then fetches traces before proving (the Go roller's
prove loop, spec 6.5). The seed loop observes the same ledger the listener writes, so both
see each task at the same instant. Also per generation: the gap from one answer delivered
to the next task received (the coordinator's side of the idle time: the dispatch tick on
WS, here 2 s as on the real coordinator; on HTTP the roller asks again right after a
submission, else every --poll-interval). Runs real processes: redis-server, the devnet,
the listener, one Celery worker, the native prover.

    python bench/dispatch.py [--tasks 20] [--protocols ws,http-h1,...]
                             [--ops]

--ops runs the operators' view too: Flower (sees every job event) and a scraper hitting the
listener's and the workers' metrics endpoints every second (Prometheus scrapes every 15 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from common import bench_parser, one_slot_cluster

from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.ledger import TaskLedger
from roller.localrun import free_port, wait_for
from roller.worker.trace_client import TraceClient

SEED_POLL_SECONDS = 3.0
WS_DISPATCH_SECONDS = 2.0  # the 2023 coordinator's dispatch tick


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class SeedPoller(threading.Thread):
    """The seed's loop: peek the store; empty -> sleep 3 s; else fetch traces, then prove."""

    def __init__(self, ledger: TaskLedger, slot: str, traces: TraceClient) -> None:
        super().__init__(daemon=True)
        self.ledger, self.slot, self.traces = ledger, slot, traces
        self.started: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            fresh = [t for t in self.ledger.task_ids(self.slot) if t not in self.started]
            if not fresh:
                self.stop.wait(SEED_POLL_SECONDS)
                continue
            for task_id in fresh:
                rec = self.ledger.get(self.slot, task_id)
                if rec is not None:
                    self.traces.get_traces_json(list(rec.task.block_hashes))
                    self.started[task_id] = time.time()


class Scraper(threading.Thread):
    """Scrapes the metrics endpoints every second, as a (busy) Prometheus would."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.scrapes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import requests

        while not self.stop.wait(1.0):
            for url in self.urls:
                try:
                    requests.get(url, timeout=5).raise_for_status()
                    self.scrapes += 1
                except requests.RequestException:
                    pass


@dataclass
class Result:
    protocol: str
    ours: list[float]
    seed: list[float]
    gaps: list[float]
    scrapes: int


def measure(args: argparse.Namespace, protocol: str) -> Result:
    ports = {"listener_port": free_port(), "worker_port": free_port()}
    extra: dict[str, Any] = {
        "metrics": ports,
        "flower": {"port": free_port(), "db_path": str(args.workdir.resolve() / "flower.db")}}
    devnet = ["--dispatch-interval", str(WS_DISPATCH_SECONDS)]
    if protocol == "ws-2023-07":
        devnet += ["--protocol", protocol]
        extra["coordinator"] = {"protocol": protocol}
    elif protocol != "ws":
        devnet = ["--protocol", protocol, "--http-port", "0"]
        extra["coordinator"] = {"protocol": protocol,
                                "poll_interval_seconds": args.poll_interval}
    cluster, slot = one_slot_cluster(args, "stand-in", extra, devnet)
    scraper = Scraper([f"http://127.0.0.1:{p}/metrics" for p in ports.values()])
    try:
        cluster.start(start_roller=not args.ops)
        if args.ops:
            cluster.start_flower(no_auth=True)
            cluster.start_roller()
            scraper.start()
        # A worker consumes once its prover check passed (circuits loaded): measure the
        # dispatch path, not the worker's start.
        wait_for(lambda: all(" ready." in w.output() for w in cluster.workers.values()), 600,
                 "the workers to be ready", interval=0.5)
        ledger = TaskLedger.from_url(cluster.redis.url)
        poller = SeedPoller(ledger, slot, TraceClient(cluster.devnet.l2_url))
        poller.start()
        files = sorted(DEFAULT_TRACE_DIR.glob("block_*.json.gz"))[: args.tasks]
        for f in files:
            block_hash = json.loads(read_trace_file(f))["header"]["hash"]
            cluster.devnet.control("push_task", {"type": 0, "block_hashes": [block_hash]})

        def delivered() -> list[str]:
            ids = ledger.task_ids(slot)
            recs = [ledger.get(slot, i) for i in ids]
            return ids if len(ids) == len(files) and all(
                r is not None and r.state == "delivered" for r in recs) else []

        wait_for(lambda: bool(delivered()), 60 + 30 * len(files) + args.poll_interval,
                 "every task delivered", interval=1.0)
        time.sleep(SEED_POLL_SECONDS + 1)
        poller.stop.set()
        rows = [{**ledger.r.hgetall(f"roller:task:{slot}:{task_id}"), "id": task_id}
                for task_id in delivered()]
        rows.sort(key=lambda raw: float(raw["received_at"]))
        ours = [float(raw["prove_started_at"]) - float(raw["received_at"]) for raw in rows]
        seed = [poller.started[raw["id"]] - float(raw["received_at"]) for raw in rows]
        gaps = [float(nxt["received_at"]) - float(prev["finished_at"])
                for prev, nxt in itertools.pairwise(rows)]
    finally:
        scraper.stop.set()
        cluster.stop()
    return Result(protocol, ours, seed, gaps, scraper.scrapes)


def main() -> int:
    parser = bench_parser(__doc__, "dispatch")
    parser.add_argument("--tasks", type=int, default=20, help="1-block tasks (max 49)")
    parser.add_argument("--protocols", default="ws,ws-2023-07,http-h1,http-h2,http-h3,http-h4",
                        help="comma-separated: ws (2023-06), ws-2023-07 and the devnet's "
                        "HTTP generations")
    parser.add_argument("--poll-interval", type=float, default=15.0,
                        help="HTTP: seconds between get_task calls while idle (default 15)")
    parser.add_argument("--ops", action="store_true",
                        help="with Flower running and the metrics endpoints scraped every 1 s")
    args = parser.parse_args()
    results = [measure(args, p.strip()) for p in args.protocols.split(",") if p.strip()]
    ms = 1000.0
    print(f"dispatch latency, task received -> prover call starts ({args.tasks} tasks per "
          f"generation{', Flower + metrics scraped every 1 s' if args.ops else ''}; WS "
          f"dispatch tick {WS_DISPATCH_SECONDS:g} s, HTTP poll interval {args.poll_interval:g} s)")
    print(f"{'generation':<12}{'path':<28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for r in results:
        for name, values in (("roller (listener+Celery)", r.ours),
                             ("seed-style 3 s poll loop", r.seed),
                             ("answer -> next task", r.gaps)):
            print(f"{r.protocol:<12}{name:<28}{percentile(values, 0.5) * ms:>10.1f}"
                  f"{percentile(values, 0.99) * ms:>10.1f}{statistics.mean(values) * ms:>10.1f}")
    for r in results:
        print(f"{r.protocol}: ratio seed/roller p50 "
              f"{percentile(r.seed, 0.5) / percentile(r.ours, 0.5):.1f}x, p99 "
              f"{percentile(r.seed, 0.99) / percentile(r.ours, 0.99):.1f}x"
              + (f", {r.scrapes} scrapes" if args.ops else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
