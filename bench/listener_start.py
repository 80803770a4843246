"""Listener start: seconds from `python -m roller.listener` to each slot's registration.

A fleet upgrade restarts listeners, so this is idle time for every GPU of the host. Real
processes: redis-server, the devnet (WS coordinator), the listener with N slots whose
keystores use geth's scrypt strength (n = 2^18, about a second each). The keystores are
made once and reused. `--roller-path` runs another checkout's listener on the same
keystores (e.g. the previous release, for a before/after figure in one run).

    python bench/listener_start.py [--slots 8] [--roller-path ../old-checkout]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import bench_parser

from roller.keys import load_or_create_keystore
from roller.ledger import TaskLedger
from roller.localrun import DevnetProcess, Proc, RedisServer, python_env, wait_for, write_config

PASSWORD = "bench-listener-start"


def run_listener(workdir: Path, config: Path, label: str, roller_path: str | None,
                 slots: list[str], ledger: TaskLedger) -> list[float]:
    """Seconds from the listener's start to each slot's registration, read from the times
    the listener writes into the ledger (the same clock as ours)."""
    env = python_env({"PYTHONPATH": roller_path} if roller_path else None)
    env.pop("ROLLER_CONFIG", None)
    # cwd outside any checkout: `python -m` puts the cwd first on sys.path.
    proc = Proc(f"listener-{label}", [sys.executable, "-m", "roller.listener", "--config",
                                      str(config)], workdir / f"listener-{label}.log", env,
                cwd=workdir)
    started = time.time()
    proc.start()

    def registered() -> dict[str, float]:
        out = {}
        for slot in slots:
            fields = ledger.session(slot)
            since = float(fields.get("since") or 0)
            if fields.get("state") == "registered" and since > started:
                out[slot] = since - started
        return out

    try:
        wait_for(lambda: len(registered()) == len(slots), 300,
                 f"{len(slots)} registrations ({label})", interval=0.1)
        return sorted(registered().values())
    finally:
        proc.stop()


def main() -> int:
    parser = bench_parser(__doc__, "listener-start")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--roller-path", default=None,
                        help="another checkout whose listener runs first, for comparison")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    slots = [{"name": f"chunk-gpu{i}", "queue": f"gpu{i}", "gpu": i, "prove_type": 0,
              "keystore_path": str(workdir / f"keystore-gpu{i}.json")} for i in range(args.slots)]
    for slot in slots:  # made once; reused by later runs
        load_or_create_keystore(slot["keystore_path"], PASSWORD)
    redis = RedisServer(workdir / "redis").start()
    devnet = DevnetProcess(workdir / "devnet", ["--no-chunk-tasks"]).start()
    results: list[tuple[str, list[float]]] = []
    try:
        config = write_config(workdir / "config.json", coordinator_url=devnet.ws_url,
                              trace_endpoint=devnet.l2_url, broker_url=redis.url,
                              slots=slots, params_dir=workdir, password=PASSWORD)
        names = [s["name"] for s in slots]
        ledger = TaskLedger.from_url(redis.url)
        if args.roller_path:
            other = str(Path(args.roller_path).resolve())
            results.append(("other checkout",
                            run_listener(workdir, config, "other", other, names, ledger)))
        results.append(("this checkout",
                        run_listener(workdir, config, "this", None, names, ledger)))
    finally:
        devnet.stop()
        redis.stop()
    print(f"listener start with {args.slots} slots (geth-strength keystores): seconds from "
          "process start to registration")
    print(f"{'listener':<16}{'first slot':>12}{'median':>10}{'last slot':>12}")
    for label, times in results:
        print(f"{label:<16}{times[0]:>12.1f}{times[len(times) // 2]:>10.1f}{times[-1]:>12.1f}")
    if len(results) == 2:
        print(f"ratio other/this: last slot {results[0][1][-1] / results[1][1][-1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
