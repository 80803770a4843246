"""`roller demo`: a local devnet proving real mainnet traces end to end.

Starts Redis, the devnet (coordinator + L2 node over the shipped chain-534352 blocks),
the listener and one `celery -A roller worker -Q gpuN` per slot (two chunk slots, one
batch slot, on CPU), waits until every chunk task and the batch task over their proofs
are verified, and prints one row per task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roller.config import RollerConfig, load_config, proof_kind
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
from roller.errors import RollerError
from roller.forks import PRE_FORK
from roller.ledger import TaskLedger
from roller.localrun import LocalCluster, demo_slots, free_port
from roller.operator.status import snapshot

FINAL = ("verified", "failed")


def _short(task_id: str) -> str:
    return f"{task_id[:10]}…"


class Progress:
    """Prints one line per task state change, as the devnet coordinator records it."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.started = time.monotonic()

    def __call__(self, tasks: list[dict[str, Any]]) -> None:
        for t in tasks:
            if self.seen.get(t["id"]) != t["state"]:
                self.seen[t["id"]] = t["state"]
                kind = proof_kind(t["type"])
                size = (f"{len(t['block_hashes'])} blocks" if t["type"] == 0
                        else f"{t['sub_proof_count']} "
                             f"{'chunk' if t['type'] == 1 else 'batch'} proofs")
                elapsed = time.monotonic() - self.started
                print(f"[{elapsed:6.1f}s] {kind} {_short(t['id'])} ({size}): {t['state']}",
                      flush=True)


def _all_done(tasks: list[dict[str, Any]]) -> bool:
    return (any(t["type"] == 1 for t in tasks)
            and all(t["state"] in FINAL for t in tasks))


def summary_rows(tasks: list[dict[str, Any]], ledger: TaskLedger,
                 slots: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for t in tasks:
        record = next((rec for s in slots if (rec := ledger.get(s["name"], t["id"]))), None)
        # Taken for verification: the WS coordinator's `outcome`, the HTTP one's `verdict`.
        accepted = [s for s in t["submissions"]
                    if (s.get("outcome") or s.get("verdict")) in ("valid", "invalid")]
        rows.append([
            t["id"][:18] + "…",
            record.slot if record else "-",
            t.get("fork", "-"),
            str(len(t["block_numbers"])) if t["type"] == 0 else
            f"{t['sub_proof_count']} {'chunks' if t['type'] == 1 else 'batches'}",
            f"{record.prove_seconds:.1f}" if record and record.prove_seconds else "-",
            "yes" if accepted else "no",
            "yes" if t["state"] == "verified" else "no",
        ])
    return rows


def print_table(header: Sequence[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


DESCRIPTION = ("Prove the shipped Scroll mainnet blocks (chain 534352) on a local devnet: "
               "Redis, coordinator + L2 node, listener, two chunk workers (gpu0, gpu1) and one "
               "batch worker (gpu2), all on CPU and loopback.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=Path("run/demo"),
                        help="logs, Redis data, config and keystores (default: %(default)s; "
                             "wiped at start)")
    parser.add_argument("--params-dir", type=Path, default=Path("run/params"),
                        help="prover circuit cache, kept between runs (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=8,
                        help="blocks per chunk task (default: %(default)s)")
    parser.add_argument("--flower-port", type=int, default=5555,
                        help="run Flower WITHOUT auth (devnet only) on this loopback port, "
                             "0 for none (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="give up after this many seconds (default: %(default)s)")
    parser.add_argument("--cross-fork", action="store_true",
                        help="rehearse a hard fork: an http-h3 devnet whose chain switches "
                             "from darwin to darwinV2 halfway through the traces (Scroll's "
                             "darwinV2Time), a roller that holds both forks; the table shows "
                             "each task's fork")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster up after the table, to explore `roller "
                             "status`, Flower and the metrics; Ctrl-C stops it")


def build_circuits(params_dir: Path, forks: Sequence[str] = (PRE_FORK,)) -> None:
    """The prover's circuits of each fork, built (first run, ~15-40 s a fork on 2 cores) or
    reloaded, as a visible step: otherwise the first job of each worker would build them in
    silence."""
    import subprocess

    code = ("import sys; from roller.ffi import load_prover; "
            "p = load_prover(None, sys.argv[1]); "
            "[p.warm_up(t, f) for f in sys.argv[2:] for t in (0, 1)]")
    started = time.monotonic()
    print(f"prover circuits: building or loading under {params_dir}/ "
          "(first run only: ~15-40 s on 2 cores)", flush=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(params_dir), *forks],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            print(f"  ... {time.monotonic() - started:.0f} s", flush=True)
    if proc.returncode != 0:
        lines = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        raise RollerError(f"prover circuits: {lines[-1] if lines else proc.returncode}")
    print(f"prover circuits ready in {time.monotonic() - started:.1f} s", flush=True)


def _start_flower(cluster: LocalCluster, port: int) -> None:
    """Flower without auth: a devnet convenience, never fatal to the demo."""
    if not port:
        return
    try:
        cluster.start_flower(no_auth=True)
    except RollerError as exc:
        print(f"Flower not started ({exc}); see flower.log", file=sys.stderr)
        return
    print(f"Flower (NO AUTH, devnet only): http://127.0.0.1:{port}/tasks", flush=True)


def cross_fork_chain() -> dict[str, int]:
    """Scroll's chain config keys for a chain on darwin that switches to darwinV2 at the
    timestamp of the shipped traces' middle block."""
    served = load_trace_dir(DEFAULT_TRACE_DIR).ordered()
    middle = served[len(served) // 2]
    return {"bernoulliBlock": 0, "curieBlock": 0, "darwinTime": 0,
            "darwinV2Time": middle.timestamp}


def run(args: argparse.Namespace) -> int:
    if args.chunk_size < 1:
        print("roller demo: --chunk-size: expected at least 1 block per chunk",
              file=sys.stderr)
        return 2
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    args.params_dir.mkdir(parents=True, exist_ok=True)
    slots = demo_slots(args.workdir.resolve())
    devnet_args = ["--chunk-size", str(args.chunk_size), "--batch", "--verifier", "native",
                   "--dispatch-interval", "0.5"]
    extra: dict[str, Any] = {
        "metrics": {"listener_port": free_port(), "worker_port": free_port()},
        "flower": {"port": args.flower_port,
                   "db_path": str(args.workdir.resolve() / "flower.db")}}
    forks: tuple[str, ...] = (PRE_FORK,)
    if args.cross_fork:
        forks = ("darwin", "darwinV2")
        chain = args.workdir.resolve() / "chain.json"
        chain.write_text(json.dumps(cross_fork_chain()))
        devnet_args += ["--protocol", "http-h3", "--http-port", "0", "--chain-config",
                        str(chain)]
        # A demo's polling: a task every second, not every 15 s.
        extra["coordinator"] = {"protocol": "http-h3", "poll_interval_seconds": 1}
    cluster = LocalCluster(args.workdir.resolve(), slots=slots,
                           params_dir=args.params_dir.resolve(), devnet_args=devnet_args,
                           config_extra=extra, forks=forks)
    print(f"roller demo: logs in {args.workdir}/ (listener.log, worker-gpuN.log, devnet.log)")
    try:
        build_circuits(args.params_dir.resolve(), forks)
        cluster.start(start_roller=False)
        print(f"devnet up: coordinator {cluster.devnet.coordinator_url}, L2 node "
              f"{cluster.devnet.l2_url}, forks {', '.join(cluster.devnet.info['forks'])}")
        _start_flower(cluster, args.flower_port)
        cluster.start_roller()
        cfg = load_config(cluster.config)
        print(f"metrics: listener http://{cfg.metrics.bind}:{cfg.metrics.listener_port}/metrics,"
              f" workers http://{cfg.metrics.bind}:{cfg.metrics.worker_port}/metrics")
        print("slots: " + ", ".join(f"{s['name']} -> {s['queue']}" for s in slots), flush=True)
        cluster.wait_tasks(_all_done, args.timeout, on_poll=Progress())
        tasks = cluster.tasks()
        ledger = TaskLedger.from_url(cluster.redis.url)
        print()
        print_table(["task id", "slot", "fork", "blocks", "prove s", "accepted", "verified"],
                    summary_rows(tasks, ledger, slots))
        ok = all(t["state"] == "verified" for t in tasks)
        print(f"\n{len(tasks)} tasks, {'all verified' if ok else 'NOT all verified'}")
        print(f"\n$ roller status --config {cluster.config}\n{snapshot(cfg, ledger)}")
        if args.keep:
            _keep(cluster, cfg)
        return 0 if ok else 1
    except RollerError as exc:
        print(f"demo failed: {exc}\nsee the logs in {args.workdir}/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        print("stopping the demo: listener, workers, Flower, devnet, Redis (a few seconds)",
              flush=True)
        cluster.stop()


def _keep(cluster: LocalCluster, cfg: RollerConfig) -> None:
    print(f"\nthe cluster stays up; in another shell (from this directory):\n"
          f"  .venv/bin/roller status --config {cluster.config} --watch 5\n"
          f"  curl -s http://{cfg.metrics.bind}:{cfg.metrics.listener_port}/metrics\n"
          f"  Flower: http://{cfg.flower.address}:{cfg.flower.port}/tasks (if it started)\n"
          "Ctrl-C stops it.", flush=True)
    while True:
        time.sleep(3600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roller demo", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
