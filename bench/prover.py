"""Benchmark of the native prover over real traces.

    .venv/bin/python bench/prover.py [--params DIR] [--sizes 1,2,4,8,16,32] [--batches 2,4,8]
                                     [--repeat 20]

Each chunk size runs in a fresh process, so "peak RSS" is that proof's own high-water mark
(circuit loading included, circuit building excluded: the params dir is prepared first).
Batch times are for chunks of 4 consecutive chain-222222 blocks; the first batch of each size
includes building that batch circuit. --repeat N proves one chunk N times in one process and
prints RSS after each proof (leak check).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roller.ffi import load_prover  # noqa: E402

MAINNET = ROOT / "roller" / "devnet" / "data" / "chain-534352"
SHARED_DEVNET = ROOT.parent / "shared" / "testdata" / "chain-222222"


def blocks(chain: str, count: int, first: int | None = None) -> list[dict[str, Any]]:
    if chain == "534352":
        start = 2640 if first is None else first
        return [
            json.load(gzip.open(MAINNET / f"block_{n}.json.gz", "rt"))
            for n in range(start, start + count)
        ]
    start = 527 if first is None else first
    out = []
    for n in range(start, start + count):
        folder = "chunk_10" if n <= 615 else "chunk_11"
        out.append(json.loads((SHARED_DEVNET / folder / f"block_{n}.json").read_text()))
    return out


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """VmHWM: unlike ru_maxrss it is not inherited from the parent across fork+exec."""
    return _status_mb("VmHWM")


def cpu_s() -> float:
    """CPU seconds of this process, all threads: steadier than wall time on a busy machine."""
    return time.process_time()


def one(params: str, chain: str, size: int) -> dict[str, Any]:
    prover: Any = load_prover(None, params)
    traces = json.dumps(blocks(chain, size))
    txs = sum(len(b["transactions"]) for b in json.loads(traces))
    prover.verify_chunk_proof("{}", "{}")  # initialise the verifier outside the timing
    task = json.dumps(prover.chunk_info(traces))  # what the coordinator recomputes
    c0, t0 = cpu_s(), time.perf_counter()
    proof = prover.gen_chunk_proof(traces)
    c1, t1 = cpu_s(), time.perf_counter()
    ok = prover.verify_chunk_proof(proof, task)
    t2 = time.perf_counter()
    p = json.loads(proof)
    inst = base64.b64decode(p["instance"])
    return {
        "chain": chain,
        "blocks": p["block_count"],
        "txs": txs,
        "bytes": int.from_bytes(inst[200:208], "big"),
        "prove_s": round(t1 - t0, 2),
        "cpu_s": round(c1 - c0, 2),
        "verify_ms": round((t2 - t1) * 1000, 1),
        "proof_kb": round(len(base64.b64decode(p["proof"])) / 1024, 1),
        "peak_rss_mb": round(peak_mb()),
        "valid": ok,
    }


def batches(params: str, sizes: list[int]) -> None:
    prover: Any = load_prover(None, params)
    n_max = max(sizes)
    traces = [json.dumps(blocks("222222", 4, 527 + 4 * i)) for i in range(n_max)]
    chunks = [json.loads(prover.gen_chunk_proof(t)) for t in traces]
    infos = [prover.chunk_info(t) for t in traces]
    print(f"\nbatch over chunks of 4 chain-222222 blocks ({n_max} chunk proofs made)")
    head = ["chunks", "first_s", "prove_s", "cpu_s", "verify_ms", "proof_kb", "valid"]
    print(" ".join(f"{h:>9}" for h in head))
    for n in sizes:
        t0 = time.perf_counter()
        prover.gen_batch_proof(json.dumps(chunks[:n]))
        c1, t1 = cpu_s(), time.perf_counter()
        proof = prover.gen_batch_proof(json.dumps(chunks[:n]))
        c2, t2 = cpu_s(), time.perf_counter()
        ok = prover.verify_batch_proof(proof, json.dumps(infos[:n]))
        t3 = time.perf_counter()
        kb = len(base64.b64decode(json.loads(proof)["proof"])) / 1024
        cells = [n, f"{t1 - t0:.2f}", f"{t2 - t1:.2f}", f"{c2 - c1:.2f}",
                 f"{(t3 - t2) * 1000:.1f}", f"{kb:.1f}", ok]
        print(" ".join(f"{c!s:>9}" for c in cells), flush=True)
    print(f"peak RSS of the batch process: {peak_mb():.0f} MB")


def repeat(params: str, count: int) -> None:
    prover = load_prover(None, params)
    traces = json.dumps(blocks("534352", 8))
    print(f"\n{count} consecutive proofs of 8 chain-534352 blocks in one process")
    for i in range(count):
        t0 = time.perf_counter()
        prover.gen_chunk_proof(traces)
        print(f"proof {i + 1:>2}: {time.perf_counter() - t0:5.2f} s  RSS {rss_mb():7.1f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description="native prover benchmark")
    ap.add_argument("--params", default="/tmp/roller_bench_params")
    ap.add_argument("--sizes", default="1,2,4,8,16,32")
    ap.add_argument("--batches", default="2,4,8")
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--one", nargs=2, metavar=("CHAIN", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.params, args.one[0], int(args.one[1]))))
        return 0
    t0 = time.perf_counter()
    load_prover(None, args.params).verify_chunk_proof("{}", "{}")  # builds circuits on first use
    print(f"params ready in {time.perf_counter() - t0:.1f} s ({args.params})")
    chains = ["534352"] + (["222222"] if SHARED_DEVNET.exists() else [])
    cols = ["chain", "blocks", "txs", "bytes", "prove_s", "cpu_s", "verify_ms", "proof_kb",
            "peak_rss_mb"]
    print(" ".join(f"{c:>11}" for c in cols))
    for chain in chains:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            out = subprocess.run(
                [sys.executable, __file__, "--params", args.params, "--one", chain, str(size)],
                check=True, capture_output=True, text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            assert row["valid"], row
            print(" ".join(f"{row[c]!s:>11}" for c in cols), flush=True)
    if args.batches:
        batches(args.params, [int(s) for s in args.batches.split(",") if s])
    if args.repeat:
        repeat(args.params, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
