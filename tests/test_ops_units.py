"""Operators' view without a cluster: the metrics rules, `roller status` over a real Redis,
the worker endpoint's multiprocess merge, and `roller flower` refusing to run unprotected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from roller.config import parse_config
from roller.ledger import TaskLedger, TaskState
from roller.localrun import python_env
from roller.observe import metrics
from roller.observe.worker_metrics import drop_dead_processes
from roller.operator.flower import flower_argv, flower_env
from roller.operator.status import collect, duration, render
from roller.protocol.messages import ProofDetail, RespStatus, TaskMsg

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "roller_name": "ops", "keystore_path": str(tmp_path / "k.json"),
        "keystore_password": "pw", "coordinator_url": "ws://127.0.0.1:1",
        "trace_endpoint": "http://127.0.0.1:2",
        "slots": [
            {"name": "chunk-gpu0", "queue": "gpu0", "gpu": 0, "prove_type": 0,
             "keystore_path": str(tmp_path / "k0.json")},
            {"name": "batch-gpu1", "queue": "gpu1", "gpu": 1, "prove_type": 1,
             "keystore_path": str(tmp_path / "k1.json")},
        ],
        **extra,
    }


def test_every_metric_is_labelled() -> None:
    """An unlabelled metric would bind its value store before multiprocess mode is on."""
    found = [m for m in vars(metrics).values() if hasattr(m, "_labelnames")]
    assert len(found) >= 12
    assert all(m._labelnames for m in found), [m._name for m in found if not m._labelnames]


def test_ledger_collector_reads_queue_depth_and_outbox(redis_url: str, tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path), tmp_path, env={})
    ledger = TaskLedger.from_url(redis_url)
    ledger.r.rpush("gpu0", "a", "b")
    ledger.r.rpush("gpu0\x06\x163", "c")
    ledger.r.zadd("roller:outbox:batch-gpu1", {"0x01": 1.0})
    registry = CollectorRegistry()
    registry.register(metrics.LedgerCollector(ledger, cfg.slots))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    assert samples[("roller_queue_depth", (("queue", "gpu0"),))] == 3
    assert samples[("roller_queue_depth", (("queue", "gpu1"),))] == 0
    assert samples[("roller_outbox_size", (("slot", "batch-gpu1"),))] == 1
    assert samples[("roller_outbox_size", (("slot", "chunk-gpu0"),))] == 0


def test_ledger_collector_reads_answer_age_and_redis_memory(redis_url: str,
                                                           tmp_path: Path) -> None:
    """The alert rules' inputs: the oldest undelivered answer per slot, Redis memory."""
    cfg = parse_config(config(tmp_path), tmp_path, env={})
    ledger = TaskLedger.from_url(redis_url)
    stored = time.time()
    for n, slot in ((0x33, "chunk-gpu0"), (0x44, "chunk-gpu0")):
        task = TaskMsg(id="0x" + f"{n:02x}" * 32, type=0, block_hashes=("0x" + "cc" * 32,),
                       sub_proofs=())
        ledger.assign(slot, task, epoch=1)
        ledger.acquire_lease(slot, task.id, "w:1", 30)
        ledger.start_attempt(slot, task.id, "w:1", "w", "gpu0")
        ledger.store_proof(slot, ProofDetail(id=task.id, type=0, status=RespStatus.ERROR,
                                             proof=None, error="x"), 1.0,
                           owner="w:1")
    ledger.r.config_set("maxmemory", 256 << 20)
    try:
        registry = CollectorRegistry()
        registry.register(metrics.LedgerCollector(ledger, cfg.slots, clock=lambda: stored + 900))
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(generate_latest(registry).decode())
                   for s in f.samples}
    finally:
        ledger.r.config_set("maxmemory", 0)
    assert samples[("roller_outbox_size", (("slot", "chunk-gpu0"),))] == 2
    assert 899 <= samples[("roller_outbox_oldest_age_seconds", (("slot", "chunk-gpu0"),))] <= 901
    assert samples[("roller_outbox_oldest_age_seconds", (("slot", "batch-gpu1"),))] == 0
    assert samples[("roller_redis_maxmemory_bytes", ())] == 256 << 20
    assert 0 < samples[("roller_redis_used_memory_bytes", ())] < 256 << 20


def test_status_table_from_the_ledger(redis_url: str, tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path), tmp_path, env={})
    ledger = TaskLedger.from_url(redis_url)
    now = time.time()
    done = TaskMsg(id="0x" + "11" * 32, type=0, block_hashes=("0x" + "aa" * 32,), sub_proofs=())
    running = TaskMsg(id="0x" + "22" * 32, type=0, block_hashes=("0x" + "bb" * 32,), sub_proofs=())
    ledger.assign("chunk-gpu0", done, epoch=1, now=now - 600)
    ledger.acquire_lease("chunk-gpu0", done.id, "w:1", 30)
    ledger.start_attempt("chunk-gpu0", done.id, "w:1", "w", "gpu0")
    ledger.store_proof("chunk-gpu0", ProofDetail(id=done.id, type=0, status=RespStatus.ERROR,
                                                 proof=None, error="x"), 42.0, owner="w:1")
    ledger.finish("chunk-gpu0", done.id, TaskState.DELIVERED, "accepted")
    ledger.assign("chunk-gpu0", running, epoch=1, now=now - 95)
    ledger.acquire_lease("chunk-gpu0", running.id, "w:2", 30)
    ledger.start_attempt("chunk-gpu0", running.id, "w:2", "w", "gpu0")
    ledger.start_attempt("chunk-gpu0", running.id, "w:2", "w", "gpu0")
    ledger.note("chunk-gpu0", running.id, fork="darwinV2")  # the job notes its proof's fork
    ledger.set_session("chunk-gpu0", "registered")
    ledger.touch_session("chunk-gpu0", now)
    text = render(collect(ledger, cfg, now), now)
    lines = text.splitlines()
    assert "2 slot(s), outbox backlog 0" in lines[0]
    chunk = next(line for line in lines if line.startswith("chunk-gpu0"))
    assert chunk.split()[2:10] == ["registered", "0s", "0x22222222…", "proving", "darwinV2",
                                   "1m35s", "2", "42.0s"]
    assert "accepted" in chunk
    batch = next(line for line in lines if line.startswith("batch-gpu1"))
    assert batch.split()[2:7] == ["never", "seen", "-", "idle", "-"]
    # A listener that stopped touching its sessions shows them disconnected, whatever it
    # last wrote.
    later = now + 60
    chunk = next(line for line in render(collect(ledger, cfg, later), later).splitlines()
                 if line.startswith("chunk-gpu0"))
    assert chunk.split()[2:4] == ["disconnected", "1m00s"]


def test_status_names_the_generation_and_token_life(tmp_path: Path, redis_url: str) -> None:
    cfg = parse_config(config(tmp_path), tmp_path, env={})
    ledger = TaskLedger.from_url(redis_url)
    now = time.time()
    ledger.set_session("batch-gpu1", "registered", generation="http-h3", token_expires=now + 60)
    ledger.touch_session("batch-gpu1", now, token_expires=now + 3000)  # renewed since
    line = next(line for line in render(collect(ledger, cfg, now), now).splitlines()
                if line.startswith("batch-gpu1"))
    assert " http-h3 token 50m00s " in line
    ledger.set_session("batch-gpu1", "registered", generation="ws-2023-06")
    line = next(line for line in render(collect(ledger, cfg, now), now).splitlines()
                if line.startswith("batch-gpu1"))
    assert " ws-2023-06 " in line and "token" not in line


def test_duration_format() -> None:
    assert [duration(s) for s in (5, 75, 3725, 90000)] == ["5s", "1m15s", "1h02m", "1d01h"]


def test_roller_status_reports_an_unreachable_redis(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(tmp_path, broker_url="redis://127.0.0.1:1/0")))
    out = subprocess.run([sys.executable, "-m", "roller.cli", "status", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, env=python_env())
    assert out.returncode == 1 and "cannot read the ledger" in out.stderr


def test_dead_process_live_gauges_are_dropped(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    pid = int(dead.stdout)
    for name in (f"gauge_livesum_{pid}.db", f"counter_{pid}.db",
                 f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    drop_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{pid}.db", f"gauge_livesum_{os.getpid()}.db"])


def test_flower_refuses_to_start_without_auth(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(tmp_path)))
    env = python_env()
    env.pop("ROLLER_FLOWER_PASSWORD", None)
    out = subprocess.run([sys.executable, "-m", "roller.cli", "flower", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "refusing to start Flower without authentication" in out.stderr


def test_flower_command_line_and_environment(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path, flower={"port": 5600, "db_path": "f/flower.db"}),
                       tmp_path, env={"ROLLER_FLOWER_PASSWORD": "s3cret"})
    argv = flower_argv(cfg)
    assert argv[1:4] == ["-A", "roller", "flower"]
    assert "--port=5600" in argv and "--address=127.0.0.1" in argv
    assert "--persistent=True" in argv and f"--db={tmp_path / 'f' / 'flower.db'}" in argv
    assert any(a.startswith("--task_runtime_metric_buckets=") and "3600" in a for a in argv)
    assert any(a.startswith("--tasks_columns=") and "args" in a for a in argv)
    assert not any("s3cret" in a for a in argv), "the password must not show in ps"
    env = flower_env(cfg, tmp_path / "config.json", no_auth=False)
    assert env["FLOWER_BASIC_AUTH"] == "admin:s3cret"
    assert "FLOWER_BASIC_AUTH" not in flower_env(cfg, tmp_path / "config.json", no_auth=True)


def test_dashboard_and_scrape_config_are_valid() -> None:
    dashboard = json.loads((ROOT / "ops" / "grafana" / "roller-dashboard.json").read_text())
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("utilisation", "queue depth", "proof rate", "percentiles", "failures",
                  "outbox"):
        assert topic in titles
    scrape = (ROOT / "ops" / "prometheus" / "prometheus.yml").read_text()
    assert "roller-listener" in scrape and "roller-workers" in scrape


@pytest.mark.parametrize("outcome", metrics.OUTCOMES)
def test_proof_outcomes_are_counted_by_type(outcome: str) -> None:
    child = metrics.PROOFS.labels("batch", outcome)
    before = child._value.get()
    metrics.proof_outcome(1, outcome)
    assert child._value.get() == before + 1
