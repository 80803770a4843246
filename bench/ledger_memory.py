"""Ledger memory: Redis memory while 10,000 tasks with real proof sizes go through the ledger,
sampled every 1,000 tasks, and what a task leaves in Redis once its session window passed.

Every task takes the real path through the ledger and the job code: the listener's
`assign` and `mark_queued`, a worker's lease, attempt, proof and `store_proof`, the
listener's submission and `finish`, and the listener's sweep (`prune`, every `--sweep`
seconds, as `reconcile_interval_seconds`). Only Celery's messages (acked and deleted once a
job ends) and the coordinator (a stub that accepts every proof) are left out.

Proof size: every proof, and every sub-proof a batch task carries, has the size of the
native prover's (native/: chunk, batch and bundle proofs are padded to one size): a proof
JSON of 178,150 bytes, its `proof` field 133,248 bytes (base64 in the JSON). Measured by
proving the 4 shipped mainnet blocks 2640-2643 with the built library (`--measure
PARAMS_DIR` does it again and uses that size); the mock prover's proofs are padded to it.
One task in ten is a batch whose task message carries 15 chunk proofs, as a real
coordinator's does.

Two runs, on a fresh Redis each, printed side by side: this release's rule (a delivered proof
is dropped one session window after its delivery; `--window`, seconds) and the rule before
it (proofs kept for the whole retention). Both retentions outlast the run, so every final
record is still there at the end. Then, once the window has passed: bytes per task left in
Redis, and the size of a final record.

    python bench/ledger_memory.py [--tasks 10000] [--window 5] [--measure PARAMS_DIR]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
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
ROOT = Path(__file__).resolve().parents[1]
# The native proof's `proof` field, in bytes (see the module's docstring).
PROOF_BYTES = 133_248
SUB_PROOFS = 15
RETENTION = 72 * 3600.0


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


class RealSizeProver:
    """The mock prover, its proofs padded to the native proof size: the mock's 32-byte seal,
    then zeros (Redis stores bytes as they are: their values do not change its memory)."""

    def __init__(self, proof_bytes: int) -> None:
        self.mock = MockProver()
        self.proof_bytes = proof_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.mock, name)  # warm-up, verifiers: the mock's own

    def pad(self, proof_json: str) -> str:
        p = json.loads(proof_json)
        seal = base64.b64decode(p["proof"])
        p["proof"] = base64.b64encode(seal.ljust(self.proof_bytes, b"\0")).decode()
        return json.dumps(p)

    @staticmethod
    def unpad(proofs_json: str) -> str:
        proofs = json.loads(proofs_json)
        for p in proofs:
            p["proof"] = base64.b64encode(base64.b64decode(p["proof"])[:32]).decode()
        return json.dumps(proofs)

    def gen_chunk_proof(self, traces_json: str, *args: Any) -> str:
        return self.pad(self.mock.gen_chunk_proof(traces_json, *args))

    def gen_batch_proof(self, chunk_proofs_json: str, *args: Any) -> str:
        return self.pad(self.mock.gen_batch_proof(self.unpad(chunk_proofs_json), *args))


def fast_base64_check() -> None:
    """The protocol's Go-compatible base64 check walks every character in Python (about 25 ms
    a proof field, 15 of them in a batch task's body, at every read of a record): here valid
    base64 is let through on binascii's strict check, anything else still goes to the port.
    CPU only: what Redis holds, which this bench measures, is the same."""
    from roller.protocol import encoding

    port = encoding._b64_error_offset

    def check(text: str) -> int | None:
        try:
            binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError):
            return port(text)
        return None

    encoding._b64_error_offset = check


def measured_proof_bytes(params_dir: Path) -> int:
    """The `proof` field of a native chunk proof of the shipped blocks 2640-2643."""
    from roller.ffi import load_prover

    data = ROOT / "roller" / "devnet" / "data" / "chain-534352"
    blocks = []
    for n in range(2640, 2644):
        with gzip.open(data / f"block_{n}.json.gz", "rt") as f:
            blocks.append(json.load(f))
    proof_json = load_prover(None, str(params_dir)).gen_chunk_proof(json.dumps(blocks))
    print(f"native chunk proof: {len(proof_json):,} bytes of JSON")
    return len(base64.b64decode(json.loads(proof_json)["proof"]))


def task(i: int, subs: tuple[AggProof, ...]) -> TaskMsg:
    task_id = "0x" + hashlib.sha256(b"bench" + i.to_bytes(8, "big")).hexdigest()
    if i % 10 == 9:
        return TaskMsg(id=task_id, type=1, block_hashes=(), sub_proofs=subs)
    blocks = tuple("0x" + hashlib.sha256(f"{i}:{n}".encode()).hexdigest() for n in range(10))
    return TaskMsg(id=task_id, type=0, block_hashes=blocks, sub_proofs=())


def used(ledger: TaskLedger) -> int:
    return int(ledger.r.info("memory")["used_memory"])


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


@dataclass(frozen=True)
class Run:
    keep_seconds: float  # how long a delivered proof is kept (the window, or the retention)
    before: int  # used_memory before the first task
    samples: tuple[int, ...]  # used_memory after every 1,000 tasks
    seconds: float
    after: int  # used_memory once the window passed after the last task (swept)
    record_bytes: dict[str, float]  # MEMORY USAGE of a final record by kind, averaged


def run(args: argparse.Namespace, keep_seconds: float, proof_bytes: int, name: str) -> Run:
    workdir = args.workdir.resolve() / name
    shutil.rmtree(workdir, ignore_errors=True)
    server = RedisServer(workdir / "redis").start()
    try:
        cfg = parse_config({
            "roller_name": SLOT, "keystore_path": "k.json", "keystore_password": "x",
            "coordinator_url": "ws://127.0.0.1:9/", "trace_endpoint": "http://127.0.0.1:9/",
            "broker_url": server.url, "session_window_minutes": args.window / 60,
            "retention_hours": RETENTION / 3600,
        }, workdir, env={})
        ledger = TaskLedger.from_url(server.url, cfg.retention_seconds)
        prover = RealSizeProver(proof_bytes)
        ctx = JobContext(cfg=cfg, ledger=ledger, prover=prover,  # type: ignore[arg-type]
                         traces=CannedTraces(),  # type: ignore[arg-type]
                         worker=f"bench:{os.getpid()}")
        submitter = Submitter(ledger, cfg.retry, cfg.window_seconds)
        account = Account.create()
        client: Any = AcceptingCoordinator()
        subs = tuple(AggProof.from_json(json.loads(prover.gen_chunk_proof(f'[{{"n":{n}}}]')))
                     for n in range(SUB_PROOFS))
        before = used(ledger)
        samples = []
        started = next_sweep = time.monotonic()
        for i in range(args.tasks):
            msg = task(i, subs)
            ledger.assign(SLOT, msg, epoch=1)
            ledger.mark_queued(SLOT, msg.id)
            run_job(ctx, SLOT, msg.id, "gpu0")
            ledger.wait_proved(0.01)
            submitter.drain(SLOT, account, client)
            if time.monotonic() >= next_sweep:  # the listener's sweep
                ledger.prune(SLOT, window_seconds=keep_seconds)
                next_sweep = time.monotonic() + args.sweep
            if i % 1000 == 999:
                samples.append(used(ledger))
        seconds = time.monotonic() - started
        if keep_seconds < RETENTION:  # the last window's proofs go too
            time.sleep(keep_seconds + 0.5)
            wait_for(lambda: ledger.prune(SLOT, window_seconds=keep_seconds).proofs_dropped == 0
                     and ledger.r.zcard(f"roller:kept:{SLOT}") == 0, 30, "kept proofs dropped",
                     interval=0.2)
        after = used(ledger)
        kinds: dict[str, list[int]] = {"chunk": [], "batch": []}
        step = max(args.tasks // 100, 10) // 10 * 10
        for i in [n for first in range(0, args.tasks, step) for n in (first, first + 9)
                  if n < args.tasks]:  # chunks and batches alike
            msg = task(i, ())
            size = ledger.r.memory_usage(f"roller:task:{SLOT}:{msg.id}", samples=0)
            kinds["batch" if msg.type else "chunk"].append(int(size or 0))
        records = {k: sum(v) / len(v) for k, v in kinds.items() if v}
        ids = ledger.task_ids(SLOT)
        assert len(ids) == args.tasks, "every final record kept"
        pipe = ledger.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(f"roller:task:{SLOT}:{task_id}", "state")
        states = pipe.execute()
        delivered = states.count("delivered")
        if delivered != args.tasks:  # a window shorter than a task's way through
            print(f"{name}: {args.tasks - delivered} task(s) not delivered "
                  f"({sorted(set(states))}): raise --window", file=sys.stderr)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the AOF of the kept proofs: gigabytes
    return Run(keep_seconds, before, tuple(samples), seconds, after, records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=5.0,
                        help="session window in seconds (production: session_window_minutes, "
                             "180 min)")
    parser.add_argument("--sweep", type=float, default=1.0,
                        help="seconds between sweeps (production: reconcile_interval_seconds)")
    parser.add_argument("--measure", type=Path, metavar="PARAMS_DIR",
                        help="measure the proof size with the built native library")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the run keeping proofs for the retention")
    parser.add_argument("--workdir", type=Path, default=Path("run/bench-ledger-memory"))
    args = parser.parse_args()
    fast_base64_check()
    proof_bytes = measured_proof_bytes(args.measure) if args.measure else PROOF_BYTES
    proof_json = len(RealSizeProver(proof_bytes).gen_chunk_proof('[{"n":0}]'))
    now = run(args, args.window, proof_bytes, "window")
    kept = None if args.no_compare else run(args, RETENTION, proof_bytes, "retention")

    print(f"ledger memory, {args.tasks:,} tasks in {now.seconds:.1f} s "
          f"({args.tasks / now.seconds:.0f} a second): proofs of {proof_json:,} bytes of JSON "
          f"(proof {proof_bytes:,} bytes); 1 in 10 a batch carrying {SUB_PROOFS} chunk proofs; "
          f"window {args.window:g} s, sweep every {args.sweep:g} s, retention 72 h")
    head = f"{'tasks':>7}  {'proof dropped a window after delivery':>38}"
    if kept is not None:
        head += f"  {'proof kept for the retention':>30}"
    print(head)
    print(f"{0:>7,}  {mib(now.before):>38}" + (f"  {mib(kept.before):>30}" if kept else ""))
    for n, sample in enumerate(now.samples):
        line = f"{(n + 1) * 1000:>7,}  {mib(sample):>38}"
        if kept is not None:
            line += f"  {mib(kept.samples[n]):>30}"
        print(line)
    per_task = (now.after - now.before) / args.tasks
    print(f"after the window: {mib(now.after)}, {per_task:,.0f} bytes a task "
          f"(records {', '.join(f'{k} {v:,.0f} B' for k, v in now.record_bytes.items())})")
    if kept is not None:
        kept_per_task = (kept.after - kept.before) / args.tasks
        print(f"proofs kept for the retention: {kept_per_task:,.0f} bytes a task "
              f"({kept_per_task / max(per_task, 1):.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
