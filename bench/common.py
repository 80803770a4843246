"""What the benchmarks share: their command line and a one-slot cluster of real processes."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from roller.localrun import LocalCluster, demo_slots


def bench_parser(doc: str, name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(f"run/bench-{name}"))
    parser.add_argument("--params-dir", type=Path, default=Path("run/params"),
                        help="prover circuit cache, shared with `roller demo`")
    return parser


def one_slot_cluster(args: argparse.Namespace, verifier: str,
                     config_extra: dict[str, Any] | None = None,
                     devnet_args: list[str] | None = None) -> tuple[LocalCluster, str]:
    """Redis, devnet (tasks only when pushed), listener and one chunk worker on gpu0."""
    # A fresh workdir: each run makes new keystores with a new random password.
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    args.params_dir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    slots = demo_slots(workdir, chunk_slots=1, batch_slots=0)
    cluster = LocalCluster(workdir, slots=slots, params_dir=args.params_dir.resolve(),
                           devnet_args=["--no-chunk-tasks", "--verifier", verifier,
                                        *(devnet_args or ["--dispatch-interval", "0.1"])],
                           config_extra=config_extra)
    return cluster, slots[0]["name"]
