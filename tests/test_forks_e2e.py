"""Across a hard fork, end to end with real processes (redis-server, `roller devnet --protocol
http-h3 --chain-config`, the listener, a chunk and a batch worker, the native prover and
verifier): the devnet's chain switches from darwin to darwinV2 at a block timestamp in the
middle of the served traces, so its chunks, batches and bundles are of one fork or the other.

- Both forks held: every task verified, each proved under its own fork (the worker's
  `fork=` log line and `roller_fork_attempts_total`), none failed.
- darwinV2 held only: every darwin task answered at once with the failure naming the fork
  (no job, so no trace fetch and no proof), every darwinV2 task verified.

Production settings but for the overrides test_e2e_http.py lists in tests/README.md (poll
interval and backoffs within test time).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.localrun import LocalCluster, demo_slots

pytestmark = pytest.mark.e2e

BLOCKS = range(2640, 2648)  # four chunks of two blocks
FIRST_V2 = 2644  # darwinV2 from this block's timestamp on


def timestamp(number: int) -> int:
    raw = read_trace_file(DEFAULT_TRACE_DIR / f"block_{number}.json.gz")
    value = json.loads(raw)["header"]["timestamp"]
    return int(value, 16) if isinstance(value, str) else int(value)


def start(root: Path, params_dir: Path, forks: list[str]) -> LocalCluster:
    traces = root / "traces"
    traces.mkdir()
    for n in BLOCKS:
        os.symlink(DEFAULT_TRACE_DIR / f"block_{n}.json.gz", traces / f"block_{n}.json.gz")
    chain = root / "chain.json"
    # l2geth's chain config keys; Bernoulli and Curie from genesis, Darwin too.
    chain.write_text(json.dumps({"bernoulliBlock": 0, "curieBlock": 0, "darwinTime": 0,
                                 "darwinV2Time": timestamp(FIRST_V2)}))
    cluster = LocalCluster(
        root, slots=demo_slots(root, chunk_slots=1, batch_slots=1), params_dir=params_dir,
        devnet_args=["--protocol", "http-h3", "--http-port", "0", "--trace-dir", str(traces),
                     "--chunk-size", "2", "--batch", "--verifier", "native",
                     "--chain-config", str(chain)],
        config_extra={"coordinator": {"protocol": "http-h3", "poll_interval_seconds": 0.5,
                                      "refused_interval_seconds": 1,
                                      "failure_backoff_seconds": 1}},
        forks=forks)
    return cluster.start()


def fork_attempts(cluster: LocalCluster, queue: str, **labels: str) -> float:
    """`roller_fork_attempts_total` samples matching `labels`, from the endpoint the queue's
    worker logged (worker_port 0: each worker binds its own)."""
    urls = re.findall(r"metrics endpoint listening what=workers url=(\S+)",
                      cluster.workers[queue].output())
    assert urls, f"no metrics endpoint in the {queue} worker's log"
    text = requests.get(urls[-1], timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "roller_fork_attempts_total"
               and all(sample.labels.get(k) == v for k, v in labels.items()))


def worker_logs(cluster: LocalCluster) -> str:
    return "".join(w.output() for w in cluster.workers.values())


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory,
         params_dir: Path) -> Iterator[tuple[LocalCluster, list[dict[str, Any]]]]:
    cluster = start(tmp_path_factory.mktemp("both"), params_dir, ["darwin", "darwinV2"])
    try:
        # Per fork: two chunks, their batch, its bundle.
        cluster.wait_tasks(lambda ts: len(ts) == 8 and all(t["state"] in ("verified", "failed")
                                                          for t in ts), 900)
        yield cluster, cluster.tasks()
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


def test_the_devnet_cuts_its_tasks_at_the_fork(
        both: tuple[LocalCluster, list[dict[str, Any]]]) -> None:
    _, tasks = both
    forks = {(t["type"], t["fork"]) for t in tasks}
    assert forks == {(k, f) for k in (0, 1, 2) for f in ("darwin", "darwinV2")}
    for t in tasks:
        if t["type"] == 0:
            want = "darwinV2" if min(t["block_numbers"]) >= FIRST_V2 else "darwin"
            assert t["fork"] == want, t


def test_both_forks_held_every_task_verified_by_its_fork_s_prover(
        both: tuple[LocalCluster, list[dict[str, Any]]]) -> None:
    cluster, tasks = both
    assert all(t["state"] == "verified" for t in tasks), [(t["id"], t["state"]) for t in tasks]
    logs = worker_logs(cluster)
    for t in tasks:
        kind = {0: "proving chunk", 1: "proving batch", 2: "proving bundle"}[t["type"]]
        lines = [line for line in logs.splitlines() if kind in line and t["id"][-20:] in line]
        assert lines and all(f"fork={t['fork']}" in line for line in lines), (t["id"], lines)
    for fork in ("darwin", "darwinV2"):
        assert fork_attempts(cluster, "gpu0", fork=fork, type="chunk", outcome="proved") == 2
        assert fork_attempts(cluster, "gpu1", fork=fork, type="batch", outcome="proved") == 1


def test_one_fork_held_the_other_s_tasks_are_answered_at_once(
        tmp_path_factory: pytest.TempPathFactory, params_dir: Path) -> None:
    cluster = start(tmp_path_factory.mktemp("one"), params_dir, ["darwinV2"])
    try:
        def done(ts: list[dict[str, Any]]) -> bool:
            darwin = [t for t in ts if t["fork"] == "darwin"]
            v2 = [t for t in ts if t["fork"] == "darwinV2"]
            return (len(darwin) == 2 and all(t["state"] == "failed" for t in darwin)
                    and len(v2) == 4 and all(t["state"] == "verified" for t in v2))

        cluster.wait_tasks(done, 900)
        tasks = cluster.tasks()
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()
    logs = worker_logs(cluster)
    for t in tasks:
        if t["fork"] != "darwin":
            continue
        errors = [s["error"] for s in t["submissions"]]
        assert errors and all("hard fork darwin not held by this prover (holds darwinV2)" in e
                              for e in errors), errors
        assert t["id"][-20:] not in logs, "a darwin task reached a worker"
