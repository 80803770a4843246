"""Ledger memory: Redis memory while 10,000 tasks go through the ledger, and after retention.

Every task takes the real path through the ledger and the job code: the listener's
`assign` and `mark_queued`, a worker's lease, attempt, proof (the mock prover) and
`store_proof`, the listener's submission and `finish`. Only Celery's messages (acked and
deleted once a job ends) and the coordinator (a stub that accepts every proof) are left
out. One task in ten is a batch whose task message carries its chunk proofs, as a real
coordinator's does: those bodies are what filled Redis before records expired.

    python bench/ledger_memory.py [--tasks 10000] [--retention 15] [--sub-proof-kib 4]

Prints used_memory before, at the peak, and after the retention has passed, beside what
the first release (records never deleted) would hold: the peak, for good.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from roller.config import parse_config
from roller.ffi.mock import MockProver
from roller.ledger import TaskLedger
from roller.listener.submitter import Submitter
from roller.localrun import RedisServer, wait_for
from roller.protocol.messages import AggProof, TaskMsg
from roller.worker.job import JobContext, run_job

SLOT = "bench-gpu0"


class AcceptingCoordinator:
    """Stands in for a registered session: every submission is accepted."""

    connected = True
    token_expires = None

    def submit(self, _task: Any, _detail: Any, _account: Any) -> None:
        return None

    def poke(self) -> None:
        return None


class CannedTraces:
    def get_traces_json(self, hashes: list[str], **_: Any) -> str:
        return "[" + ",".join(f'{{"hash":"{h}"}}' for h in hashes) + "]"


def sub_proof(i: int, kib: int) -> AggProof:
    instance = hashlib.sha256(i.to_bytes(8, "big")).digest() * (kib * 32)
    seal = hashlib.sha256(b"mock-proof" + instance).digest()
    return AggProof(seal, instance, hashlib.sha256(instance).digest(), bytes(32), 8)


def task(i: int, subs: tuple[AggProof, ...]) -> TaskMsg:
    task_id = "0x" + hashlib.sha256(b"bench" + i.to_bytes(8, "big")).hexdigest()
    if i % 10 == 9:
        return TaskMsg(id=task_id, type=1, block_hashes=(), sub_proofs=subs)
    blocks = tuple("0x" + hashlib.sha256(f"{i}:{n}".encode()).hexdigest() for n in range(10))
    return TaskMsg(id=task_id, type=0, block_hashes=blocks, sub_proofs=())


def used(ledger: TaskLedger) -> int:
    return int(ledger.r.info("memory")["used_memory"])


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--retention", type=float, default=15.0,
                        help="retention in seconds (production: retention_hours, 72 h)")
    parser.add_argument("--sub-proof-kib", type=int, default=4,
                        help="size of each chunk proof a batch task carries")
    parser.add_argument("--workdir", type=Path, default=Path("run/bench-ledger-memory"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    server = RedisServer(args.workdir.resolve() / "redis").start()
    try:
        cfg = parse_config({
            "roller_name": SLOT, "keystore_path": "k.json", "keystore_password": "x",
            "coordinator_url": "ws://127.0.0.1:9/", "trace_endpoint": "http://127.0.0.1:9/",
            "broker_url": server.url, "session_window_minutes": args.retention / 60,
            "retention_hours": args.retention / 3600,
        }, args.workdir.resolve(), env={})
        ledger = TaskLedger.from_url(server.url, cfg.retention_seconds)
        ctx = JobContext(cfg=cfg, ledger=ledger, prover=MockProver(), traces=CannedTraces(),
                         worker=f"bench:{os.getpid()}")  # type: ignore[arg-type]
        submitter = Submitter(ledger, cfg.retry, cfg.window_seconds)
        account = Account.create()
        client: Any = AcceptingCoordinator()
        subs = tuple(sub_proof(n, args.sub_proof_kib) for n in range(15))
        before = used(ledger)
        peak = before
        started = time.monotonic()
        for i in range(args.tasks):
            msg = task(i, subs)
            ledger.assign(SLOT, msg, epoch=1)
            ledger.mark_queued(SLOT, msg.id)
            run_job(ctx, SLOT, msg.id, "gpu0")
            ledger.wait_proved(0.01)
            submitter.drain(SLOT, account, client)
            if i % 500 == 499:
                peak = max(peak, used(ledger))
        elapsed = time.monotonic() - started
        peak = max(peak, used(ledger))
        finished = len(ledger.task_ids(SLOT))
        wait_for(lambda: ledger.r.dbsize() <= 4, args.retention + 60,
                 "final records to expire", interval=0.5)
        ledger.prune(SLOT)
        after = used(ledger)
        left = len(ledger.task_ids(SLOT))
    finally:
        server.stop()
    print(f"ledger memory, {args.tasks} tasks through the mock prover in {elapsed:.1f} s "
          f"(1 in 10 a batch carrying 15 chunk proofs of {args.sub_proof_kib} KiB), "
          f"retention {args.retention:g} s")
    print(f"{'':<34}{'used_memory':>14}")
    print(f"{'before':<34}{mib(before):>14}")
    print(f"{f'peak ({finished} final records kept)':<34}{mib(peak):>14}")
    print(f"{f'after retention ({left} records)':<34}{mib(after):>14}")
    print(f"{'first release (never deleted)':<34}{mib(peak):>14}  (for good)")
    print(f"ratio peak/after: {peak / max(after, 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
