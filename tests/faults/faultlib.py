"""The fault suite's cluster: a real LocalCluster (redis-server with AOF, the devnet coordinator
and L2 node, `python -m roller.listener`, `celery -A roller worker -Q gpuN` per slot, the native
prover built with the `fault-injection` feature) plus what the faults need, and the session's
result rows.

Production settings. The clusters run the roller's production defaults (above all kombu's
visibility timeout of 86400 s and the lease, grace and window of roller.lifecycle), with
these overrides only, each for the reason given:

- `retry.submit_backoff_seconds` / `_max_seconds` 0.5 / 4 (default 2 / 120): delivery
  retries within test time; the backoff's shape is unit-tested.
- `retry.reconnect_backoff_seconds` / `_max_seconds` 1 / 20 (default 1 / 60): reconnects
  within a two-minute outage (row 5a counts them).
- `reconcile_interval_seconds` 2 (default 5): the sweep period only scales how soon a dead
  record is seen (the bound is 2 sweeps + lease + grace); row 27e runs with no override at
  all and measures the production bound.
- `metrics.listener_port` a free port (default 9464): tests read the listener's counters,
  and several clusters run at once.
- `session_window_minutes` 0.25, row 9 only (default 180): row 9 is about the window.
- `retry.trace_budget_seconds` 15, row 7 only (default 300): its L2 faults outlast the
  budget on purpose; row 7b rides out a 20 s outage on the production budget.

`production=True` (row 27e) drops every override but the metrics port.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import requests
from ledger_check import Row, find_record, judge
from prometheus_client.parser import text_string_to_metric_families

from roller.config import load_config
from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file
from roller.ledger import FINAL_STATES, TaskLedger, TaskRecord
from roller.localrun import HOST, LocalCluster, Proc, demo_slots, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
FAULT_LIB = REPO / "native/target/features-fault-injection/release/libroller_prover.so"
# Short proofs: tasks of 1-3 shipped mainnet blocks (ids are unique even for the same blocks).
FIRST_BLOCK, LAST_BLOCK = 2640, 2688
RETRY = {"submit_backoff_seconds": 0.5, "submit_backoff_max_seconds": 4,
         "reconnect_backoff_seconds": 1, "reconnect_backoff_max_seconds": 20}

ROWS: dict[str, Row] = {}
LOG_DIRS: list[Path] = []


class FaultCluster:
    """A LocalCluster plus what the faults need: pushing tasks, reading both ledgers, killing."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.c = cluster
        self.ledger = TaskLedger.from_url(cluster.redis.url)
        # From the config: identities_per_gpu adds slots the cluster's list does not name.
        self.slot_names = [s.name for s in load_config(cluster.config).slots]
        # Workers a fault started beside the cluster's one per queue (their logs count too).
        self.extra_workers: list[Proc] = []
        self.queues = list(dict.fromkeys(s["queue"] for s in cluster.slots))
        self.rng = random.Random(5)
        hashes = {}
        for n in range(FIRST_BLOCK, LAST_BLOCK + 1):
            trace = read_trace_file(DEFAULT_TRACE_DIR / f"block_{n}.json.gz")
            hashes[n] = json.loads(trace)["header"]["hash"]
        self.hashes = hashes

    def wait_registered(self, timeout: float = 180) -> FaultCluster:
        wait_for(lambda: all(self.ledger.session(s).get("state") == "registered"
                             for s in self.slot_names), timeout, "every slot to register", 0.2)
        return self

    # -- tasks ----------------------------------------------------------------------------

    def push(self, blocks: int | None = None) -> str:
        count = blocks or self.rng.randint(1, 3)
        start = self.rng.randint(FIRST_BLOCK, LAST_BLOCK - count + 1)
        chain = [self.hashes[n] for n in range(start, start + count)]
        return str(self.c.devnet.control("push_task", {"type": 0, "block_hashes": chain})["id"])

    def records(self, task_id: str) -> list[TaskRecord]:
        """Our record of a coordinator task (keyed by the task id in every generation)."""
        rec = find_record(self.ledger, self.slot_names, task_id)
        return [rec] if rec is not None else []

    def rec(self, task_id: str) -> TaskRecord | None:
        recs = self.records(task_id)
        return recs[-1] if recs else None

    def proving_runs(self, task_id: str, logs: str) -> int:
        return sum(logs.count(f"proving chunk task_id={r.task.id}")
                   for r in self.records(task_id))

    def state(self, task_id: str) -> str:
        rec = self.rec(task_id)
        return rec.state if rec is not None else ""

    def wait_state(self, task_id: str, states: set[str], timeout: float = 120) -> TaskRecord:
        wait_for(lambda: self.state(task_id) in states, timeout,
                 f"task {task_id[:10]} to reach {sorted(states)}", interval=0.05)
        rec = self.rec(task_id)
        assert rec is not None
        return rec

    def submit_attempts(self, task_id: str) -> int:
        """How many times the listener sent the latest assignment's answer (the ledger's
        count, on the record's own key: the task id, or the assignment's uuid)."""
        rec = self.rec(task_id)
        assert rec is not None
        raw = self.ledger.r.hget(f"roller:task:{rec.slot}:{rec.task.id}", "submit_attempts")
        return int(raw or 0)

    def listener_metric(self, name: str, **labels: str) -> float:
        """The sum of a listener metric's samples matching `labels`, scraped now (a
        restarted listener starts its counters at zero: compare within one listener run)."""
        port = json.loads(self.c.config.read_text())["metrics"]["listener_port"]
        text = requests.get(f"http://{HOST}:{port}/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == name
                   and all(sample.labels.get(k) == v for k, v in labels.items()))

    def devnet_tasks(self) -> dict[str, dict[str, Any]]:
        return {t["id"]: t for t in self.c.tasks()}

    def wait_final(self, task_ids: list[str], timeout: float = 240) -> float:
        """Wait until the coordinator and our ledger both have a final answer; returns the
        monotonic time it was seen."""
        def done() -> bool:
            tasks = self.devnet_tasks()
            for task_id in task_ids:
                rec = self.rec(task_id)
                if rec is None or rec.state not in FINAL_STATES:
                    return False
                if tasks[task_id]["state"] not in ("verified", "failed"):
                    return False
            return True

        wait_for(done, timeout, f"tasks {[t[:10] for t in task_ids]} to finish", interval=0.25)
        return time.monotonic()

    # -- processes ------------------------------------------------------------------------

    def worker(self, queue: str) -> Proc:
        return self.c.workers[queue]

    @staticmethod
    def children(pid: int) -> list[int]:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def restart_workers(self, env: dict[str, str] | None = None) -> None:
        for queue in self.queues:
            self.worker(queue).stop()
        for queue in self.queues:
            self.c.start_worker(queue, env)

    # -- the check --------------------------------------------------------------------------

    def check(self, fault: str, task_ids: list[str], *, repetitions: int,
              recover_s: list[float], crashes: dict[str, int] | None = None,
              may_expire: bool = False, proofs: dict[str, int] | None = None) -> Row:
        """Judge every task of this fault; record the row; fail on any lost or duplicate."""
        crashes = crashes or {}
        tasks = self.devnet_tasks()
        logs = "".join(w.output() for w in [*self.c.workers.values(), *self.extra_workers])
        row = ROWS.setdefault(fault, Row(fault))
        row.repetitions += repetitions
        row.recover_s += recover_s
        for task_id in task_ids:
            verdict = judge(tasks.get(task_id), self.rec(task_id),
                            crashes=crashes.get(task_id, 0), may_expire=may_expire,
                            proving_runs=self.proving_runs(task_id, logs),
                            proofs=(proofs or {}).get(task_id, 1))
            row.tasks += 1
            row.lost += verdict.lost
            row.duplicated += verdict.duplicated
            if verdict.lost or verdict.duplicated:
                row.problems.append(f"{task_id[:12]} {verdict.why} dup={verdict.duplicated}")
        assert row.lost == 0 and row.duplicated == 0, "\n".join(row.problems)
        return row


def start_cluster(workdir: Path, params_dir: Path, fault_lib: Path, *, chunk_slots: int = 2,
                  config_extra: dict[str, Any] | None = None,
                  devnet_args: tuple[str, ...] = (), production: bool = False) -> LocalCluster:
    """A fault cluster with the overrides in the module's table (`production`: none of
    them but the metrics port)."""
    slots = demo_slots(workdir, chunk_slots=chunk_slots, batch_slots=0)
    overrides = {} if production else {"retry": RETRY, "reconcile_interval_seconds": 2}
    cluster = LocalCluster(
        workdir, slots=slots, params_dir=params_dir,
        devnet_args=["--no-chunk-tasks", "--verifier", "native", "--dispatch-interval", "0.2",
                     *devnet_args],
        # A fixed listener metrics port, so the faults can read its counters.
        config_extra={**overrides,
                      "metrics": {"bind": HOST, "listener_port": free_port(), "worker_port": 0},
                      **(config_extra or {})},
        env={"ROLLER_PROVER_LIB": str(fault_lib)})
    LOG_DIRS.append(workdir)
    try:
        cluster.start()
    except Exception:
        print(cluster.logs()[-20000:])
        cluster.stop()
        raise
    return cluster


