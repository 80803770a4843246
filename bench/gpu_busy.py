"""GPU busy share: how much of the wall time each GPU proves while the coordinator has work.

For each coordinator generation (the 2023 WS protocol and the devnet's HTTP generations
h1..h3), side by side in one run (all variants at once, each on its own devnet with the
same backlog): the roller with 1 identity per GPU, the roller with 2 identities per GPU
(`identities_per_gpu`: the next task waits in the GPU's queue, its traces fetched ahead,
while the coordinator verifies the previous proof), and a seed-style loop (one identity:
poll its task store every 3 s, fetch traces, prove, submit and wait for the verdict).
The prover takes a fixed time: the mock prover sleeping --prove-seconds (default), or the
native one (--native; its time is what the 1-block tasks take). The devnet verifies each
proof after --verify-seconds and, on WS, dispatches every --dispatch-interval seconds (2 s
on the 2023 coordinator); HTTP sessions poll every --poll-interval seconds while idle and
at once after each delivered answer.

Printed per GPU: the busy share (proving time / wall time from its first proof start to
its last proof end, while the backlog lasts) and the mean idle gap between two proofs,
by what the next task waits for at each instant of it: submit + verify (the previous proof
done -> its answer accepted, before the next task arrived), coordinator dispatch (accepted
-> next task received), our dispatch (received -> job start: listener, Redis, Celery;
seed: its 3 s poll), trace fetch (job start -> prover call), other (the rest). A part
hidden behind the previous proof (the pipelined case) counts 0.
Real processes: redis-server, the devnet, the listener, Celery workers. No assertion on
times: the figures are printed.

    python bench/gpu_busy.py [--prove-seconds 60] [--verify-seconds 10] [--tasks-per-gpu 5]
                             [--gpus 1] [--protocols ws,http-h1,http-h2,http-h3] [--native]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import bench_parser
from eth_account import Account

from roller.config import parse_config
from roller.coordinator_session import SessionFactory
from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.errors import RollerError
from roller.ffi.mock import MockProver
from roller.ledger import TaskLedger
from roller.localrun import DevnetProcess, LocalCluster, wait_for
from roller.protocol.messages import AggProof, ProofDetail, RespStatus, TaskMsg
from roller.worker.trace_client import TraceClient

BENCH_DIR = Path(__file__).resolve().parent
SEED_POLL_SECONDS = 3.0
PARTS = ("submit+verify", "coord dispatch", "our dispatch", "trace fetch", "other")


@dataclass
class Timeline:
    """One task's instants (Unix seconds) on one GPU."""

    received: float
    job: float  # job start (seed: its poll picked the task up)
    prove_start: float
    proved: float
    accepted: float


@dataclass
class GpuResult:
    variant: str
    gpu: str
    tasks: list[Timeline] = field(default_factory=list)

    def busy_share(self) -> float:
        ordered = sorted(self.tasks, key=lambda t: t.prove_start)
        wall = max(t.proved for t in ordered) - ordered[0].prove_start
        busy = sum(t.proved - t.prove_start for t in ordered)
        return busy / wall if wall > 0 else 0.0

    def gaps(self) -> list[dict[str, float]]:
        ordered = sorted(self.tasks, key=lambda t: t.prove_start)
        out = []
        for prev, nxt in zip(ordered, ordered[1:], strict=False):
            lo, hi = prev.proved, nxt.prove_start

            def clip(a: float, b: float, lo: float = lo, hi: float = hi) -> float:
                return max(0.0, min(b, hi) - max(a, lo))

            # Each instant of the gap goes to what the next task waits for then: the
            # coordinator (our previous answer, then its dispatch), our dispatch, traces.
            parts = {"submit+verify": clip(prev.proved, min(prev.accepted, nxt.received)),
                     "coord dispatch": clip(prev.accepted, nxt.received),
                     "our dispatch": clip(nxt.received, nxt.job),
                     "trace fetch": clip(nxt.job, nxt.prove_start)}
            gap = max(0.0, hi - lo)
            parts["other"] = max(0.0, gap - sum(parts.values()))
            parts["gap"] = gap
            out.append(parts)
        return out


def block_hashes(count: int) -> list[str]:
    files = sorted(DEFAULT_TRACE_DIR.glob("block_*.json.gz"))[:count]
    return [json.loads(read_trace_file(f))["header"]["hash"] for f in files]


def devnet_args(args: argparse.Namespace, protocol: str) -> list[str]:
    out = ["--no-chunk-tasks", "--verifier", "stand-in", "--verify-delay",
           str(args.verify_seconds), "--dispatch-interval", str(args.dispatch_interval)]
    if protocol != "ws":
        out += ["--protocol", protocol, "--http-port", "0"]
    return out


def push_backlog(devnet: DevnetProcess, hashes: list[str]) -> None:
    for h in hashes:
        devnet.control("push_task", {"type": 0, "block_hashes": [h]})


class RollerVariant:
    """The roller (listener + one Celery worker per GPU) with `ids` identities per GPU."""

    def __init__(self, args: argparse.Namespace, protocol: str, ids: int, workdir: Path
                 ) -> None:
        self.args, self.ids, self.name = args, ids, f"roller, {ids} id{'s' if ids > 1 else ''}/GPU"
        slots = [{"name": f"chunk-gpu{g}", "queue": f"gpu{g}", "gpu": g, "prove_type": 0,
                  "keystore_path": str(workdir / f"keystore-gpu{g}.json")}
                 for g in range(args.gpus)]
        extra: dict[str, Any] = {"identities_per_gpu": ids}
        if protocol != "ws":
            extra["coordinator"] = {"protocol": protocol,
                                    "poll_interval_seconds": args.poll_interval}
        self.cluster = LocalCluster(workdir, slots=slots, params_dir=args.params_dir.resolve(),
                                    devnet_args=devnet_args(args, protocol), config_extra=extra)

    def start(self) -> None:
        c = self.cluster
        c.start(start_roller=False)
        env = {"PYTHONPATH": os.pathsep.join(
            p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)}
        if not self.args.native:
            env["GPU_BUSY_MOCK_SECONDS"] = str(self.args.prove_seconds)
        for s in c.slots:
            c.start_worker(s["queue"], env, app="gpu_busy_worker")
        wait_for(lambda: all(" ready." in w.output() for w in c.workers.values()), 900,
                 "the workers to be ready", interval=0.5)
        c.start_listener()

    def push(self, hashes: list[str]) -> None:
        push_backlog(self.cluster.devnet, hashes)

    def done(self, count: int) -> bool:
        return sum(t["state"] == "verified" for t in self.cluster.tasks()) >= count

    def results(self) -> list[GpuResult]:
        ledger = TaskLedger.from_url(self.cluster.redis.url)
        per_gpu: dict[str, GpuResult] = {}
        for s in self.cluster.slots:
            per_gpu[s["queue"]] = GpuResult(self.name, s["queue"])
        cfg = parse_config(json.loads(self.cluster.config.read_text()),
                           self.cluster.config.parent, env={})
        for slot in cfg.slots:
            for task_id in ledger.task_ids(slot.name):
                raw = ledger.r.hgetall(f"roller:task:{slot.name}:{task_id}")
                if raw.get("state") != "delivered" or "bench_proved_at" not in raw:
                    continue
                per_gpu[slot.queue].tasks.append(Timeline(
                    float(raw["received_at"]), float(raw["bench_job_at"]),
                    float(raw["prove_started_at"]), float(raw["bench_proved_at"]),
                    float(raw["finished_at"])))
        return list(per_gpu.values())

    def stop(self) -> None:
        self.cluster.stop()


class SeedLoop(threading.Thread):
    """The seed roller's loop for one GPU, over the roller's own coordinator session code:
    tasks land in a store; every 3 s the loop looks; a task is fetched, proved, submitted,
    and the loop waits for the coordinator's verdict before it looks again."""

    def __init__(self, cfg_data: dict[str, Any], workdir: Path, prove: Callable[[str], str]
                 ) -> None:
        super().__init__(daemon=True, name="seed-loop")
        self.cfg = parse_config(cfg_data, workdir, env={})
        self.slot = self.cfg.slots[0]
        self.account = Account.create()
        self.traces = TraceClient(self.cfg.trace_endpoint)
        self.prove = prove
        self.store: list[tuple[TaskMsg, float]] = []
        self.lock = threading.Lock()
        self.busy = False
        self.stop = threading.Event()
        self.timelines: list[Timeline] = []
        self.error: str | None = None

    def _on_task(self, task: TaskMsg) -> None:
        with self.lock:
            self.store.append((task, time.time()))

    def _idle(self) -> bool:
        with self.lock:
            return not self.busy and not self.store

    def run(self) -> None:
        session = SessionFactory(self.cfg).new(self.slot, self.account)
        try:
            session.open(self._on_task, self._idle)
            while not self.stop.is_set():
                with self.lock:
                    item = self.store.pop(0) if self.store else None
                    self.busy = item is not None
                if item is None:
                    self.stop.wait(SEED_POLL_SECONDS)
                    continue
                task, received = item
                picked = time.time()
                traces = self.traces.get_traces_json(list(task.block_hashes))
                prove_start = time.time()
                proof = AggProof.from_json(json.loads(self.prove(traces)))
                proved = time.time()
                detail = ProofDetail(id=task.id, type=task.type, status=RespStatus.OK,
                                     proof=proof, error="")
                session.submit(task, detail, self.account)
                self.timelines.append(Timeline(received, picked, prove_start, proved,
                                               time.time()))
                with self.lock:
                    self.busy = False
                session.poke()
        except (RollerError, OSError) as exc:
            self.error = str(exc)
        finally:
            session.close()


class SeedVariant:
    name = "seed-style 3 s loop"

    def __init__(self, args: argparse.Namespace, protocol: str, workdir: Path) -> None:
        self.args, self.protocol, self.workdir = args, protocol, workdir
        self.devnet = DevnetProcess(workdir, devnet_args(args, protocol))
        self.loops: list[SeedLoop] = []

    def start(self) -> None:
        self.devnet.start()
        if self.args.native:
            from roller.ffi import load_prover

            native = load_prover(None, str(self.args.params_dir.resolve()))
            prove = native.gen_chunk_proof
        else:
            mock = MockProver(delay=self.args.prove_seconds)
            prove = mock.gen_chunk_proof
        for g in range(self.args.gpus):
            data: dict[str, Any] = {
                "roller_name": f"seed-gpu{g}", "keystore_path": f"unused-{g}.json",
                "keystore_password": "unused", "coordinator_url": self.devnet.coordinator_url,
                "trace_endpoint": self.devnet.l2_url}
            if self.protocol != "ws":
                data["coordinator"] = {"protocol": self.protocol,
                                       "poll_interval_seconds": SEED_POLL_SECONDS}
            self.loops.append(SeedLoop(data, self.workdir, prove))
        for loop in self.loops:
            loop.start()

    def push(self, hashes: list[str]) -> None:
        push_backlog(self.devnet, hashes)

    def done(self, count: int) -> bool:
        for loop in self.loops:
            if loop.error:
                raise RollerError(f"seed loop {loop.slot.name}: {loop.error}")
        return sum(t["state"] == "verified" for t in self.devnet.ledger()["tasks"]) >= count

    def results(self) -> list[GpuResult]:
        return [GpuResult(self.name, f"gpu{g}", loop.timelines)
                for g, loop in enumerate(self.loops)]

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop.set()
        for loop in self.loops:
            loop.join(30)
        self.devnet.stop()


def measure(args: argparse.Namespace, protocol: str) -> list[GpuResult]:
    root = args.workdir.resolve() / protocol
    variants: list[RollerVariant | SeedVariant] = [
        RollerVariant(args, protocol, 1, root / "ids1"),
        RollerVariant(args, protocol, 2, root / "ids2"),
        SeedVariant(args, protocol, root / "seed")]
    count = args.tasks_per_gpu * args.gpus
    hashes = (block_hashes(49) * (count // 49 + 1))[:count]
    try:
        for v in variants:
            v.start()
        for v in variants:  # the same backlog, pushed within a second to every devnet
            v.push(hashes)
        per_task = (args.prove_seconds if not args.native else 60) + args.verify_seconds + 20
        wait_for(lambda: all(v.done(count) for v in variants),
                 120 + per_task * args.tasks_per_gpu, "every backlog verified", interval=1.0)
        return [r for v in variants for r in v.results()]
    finally:
        for v in variants:
            v.stop()


def main() -> int:
    parser = bench_parser(__doc__, "gpu-busy")
    parser.add_argument("--prove-seconds", type=float, default=60.0,
                        help="mock prover: seconds per proof (default 60)")
    parser.add_argument("--native", action="store_true",
                        help="the native prover on 1-block tasks instead of the mock")
    parser.add_argument("--verify-seconds", type=float, default=10.0,
                        help="devnet: seconds each verification takes (default 10)")
    parser.add_argument("--dispatch-interval", type=float, default=2.0,
                        help="devnet WS dispatch tick in seconds (default 2, as in 2023)")
    parser.add_argument("--poll-interval", type=float, default=15.0,
                        help="HTTP: roller's get_task interval while idle (default 15)")
    parser.add_argument("--tasks-per-gpu", type=int, default=5)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (queues) per variant")
    parser.add_argument("--protocols", default="ws,http-h1,http-h2,http-h3",
                        help="comma-separated: ws and the devnet's HTTP generations")
    args = parser.parse_args()
    logging.getLogger("roller").setLevel(logging.ERROR)  # the seed loops' session chatter
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    args.params_dir.mkdir(parents=True, exist_ok=True)
    prover = "native prover, 1-block tasks" if args.native else \
        f"mock prover {args.prove_seconds:g} s"
    print(f"GPU busy share ({prover}; verification {args.verify_seconds:g} s; WS dispatch "
          f"tick {args.dispatch_interval:g} s; HTTP poll {args.poll_interval:g} s while idle, "
          f"seed {SEED_POLL_SECONDS:g} s; {args.tasks_per_gpu} tasks per GPU, {args.gpus} "
          f"GPU(s) per variant, variants side by side)", flush=True)
    head = f"{'generation':<11}{'variant':<21}{'gpu':<5}{'tasks':>5}{'busy %':>8}{'gap s':>7}"
    print(head + "".join(f"{p:>15}" for p in PARTS))
    for protocol in (p.strip() for p in args.protocols.split(",") if p.strip()):
        started = time.monotonic()
        for r in measure(args, protocol):
            gaps = r.gaps()

            def mean(key: str, gaps: list[dict[str, float]] = gaps) -> float:
                return statistics.mean(g[key] for g in gaps) if gaps else 0.0

            print(f"{protocol:<11}{r.variant:<21}{r.gpu:<5}{len(r.tasks):>5}"
                  f"{100 * r.busy_share():>8.2f}{mean('gap'):>7.2f}"
                  + "".join(f"{mean(p):>15.2f}" for p in PARTS), flush=True)
        print(f"# {protocol}: {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
