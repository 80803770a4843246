"""Operators' view against one real cluster: Prometheus endpoints, the Grafana dashboard's
queries, `roller status` and Flower in a headless Chromium.

One cluster for the module: Redis, the devnet over 16 shipped mainnet blocks (two chunk
tasks of 8, then one batch task), the listener, a chunk and a batch worker, and Flower
(`roller flower`, basic auth) started before the roller so it sees every job's events.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from roller.config import load_config
from roller.devnet.traces import DATA_DIR
from roller.ledger import TaskLedger
from roller.localrun import HOST, LocalCluster, demo_slots, free_port, python_env, wait_for
from roller.observe import metrics
from roller.operator.status import snapshot

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "ops" / "grafana" / "roller-dashboard.json"
BLOCKS = range(2640, 2656)
FLOWER_USER = "operator"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class OpsRun:
    cluster: LocalCluster
    tasks: list[dict[str, Any]]
    listener_url: str
    worker_url: str
    flower_url: str
    flower_auth: tuple[str, str]
    live_status: str = ""  # the last `roller status` seen while a slot was proving


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
    except requests.RequestException:
        return False
    return True


def _verified(tasks: list[dict[str, Any]]) -> bool:
    return any(t["type"] == 1 for t in tasks) and all(t["state"] == "verified" for t in tasks)


@pytest.fixture(scope="module")
def ops_run(tmp_path_factory: pytest.TempPathFactory, params_dir: Path) -> Iterator[OpsRun]:
    workdir = tmp_path_factory.mktemp("ops")
    traces = workdir / "traces"
    traces.mkdir()
    for n in BLOCKS:
        name = f"block_{n}.json.gz"
        shutil.copy(DATA_DIR / "chain-534352" / name, traces / name)
    ports = {"listener_port": free_port(), "worker_port": free_port()}
    password = os.urandom(12).hex()
    flower_port = free_port()
    cluster = LocalCluster(
        workdir, slots=demo_slots(workdir, chunk_slots=1, batch_slots=1), params_dir=params_dir,
        devnet_args=["--trace-dir", str(traces), "--chunk-size", "8", "--batch",
                     "--verifier", "native", "--dispatch-interval", "0.3"],
        config_extra={"metrics": {"bind": HOST, **ports},
                      "flower": {"address": HOST, "port": flower_port,
                                 "basic_auth": f"{FLOWER_USER}:{password}",
                                 "db_path": str(workdir / "flower.db")}})
    run = OpsRun(cluster, [], f"http://{HOST}:{ports['listener_port']}/metrics",
                 f"http://{HOST}:{ports['worker_port']}/metrics",
                 f"http://{HOST}:{flower_port}", (FLOWER_USER, password))
    try:
        cluster.start(start_roller=False)
        cluster.start_flower()
        cluster.start_roller()
        cfg = load_config(cluster.config)
        ledger = TaskLedger.from_url(cfg.broker_url)

        def watch_status(_tasks: list[dict[str, Any]]) -> None:
            text = snapshot(cfg, ledger)
            if " proving " in text:
                run.live_status = text

        cluster.wait_tasks(_verified, 600, on_poll=watch_status)
        run.tasks = cluster.tasks()
        yield run
    except Exception:
        print(cluster.logs()[-20000:])
        raise
    finally:
        cluster.stop()


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one real scrape."""
    text = requests.get(url, timeout=30).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == want for k, want in labels.items()))


def both(run: OpsRun) -> tuple[dict[str, Any], dict[str, Any]]:
    wait_for(lambda: _answers(run.worker_url), 60, "the workers' metrics endpoint")
    return scrape(run.listener_url), scrape(run.worker_url)


def test_metrics_match_the_coordinator_ledger(ops_run: OpsRun) -> None:
    listener, workers = both(ops_run)
    tasks = ops_run.tasks
    chunks = sum(t["type"] == 0 for t in tasks)
    verified = sum(t["state"] == "verified" for t in tasks)
    assert chunks == 2 and len(tasks) == 3 and verified == 3
    # listener: one notification and one job per coordinator task, nothing deduplicated
    assert total(listener, "roller_tasks_received_total") == len(tasks)
    assert total(listener, "roller_tasks_received_total", type="batch") == 1
    assert total(listener, "roller_jobs_queued_total") == len(tasks)
    assert total(listener, "roller_tasks_deduplicated_total") == 0
    for slot in ops_run.cluster.slots:
        assert total(listener, "roller_session_state", slot=slot["name"],
                     state="registered") == 1
    assert total(listener, "roller_outbox_size") == 0
    assert total(listener, "roller_queue_depth") == 0
    # accepted proofs: the worker delivers right after proving, the listener only retries
    accepted = sum(total(s, "roller_proofs_total", outcome="accepted")
                   for s in (listener, workers))
    assert accepted == verified
    assert sum(total(s, "roller_proofs_total") for s in (listener, workers)) == len(tasks)
    # histograms have observations: one per proof, per type
    assert total(workers, "roller_prove_seconds_count", type="chunk") == chunks
    assert total(workers, "roller_prove_seconds_count", type="batch") == 1
    assert total(workers, "roller_prove_seconds_sum") > 0
    assert total(workers, "roller_prove_seconds_bucket", le="+Inf") == len(tasks)
    assert sum(total(s, "roller_end_to_end_seconds_count") for s in (listener, workers)) \
        == verified
    assert total(workers, "roller_trace_fetch_seconds_count") == chunks
    assert total(workers, "roller_task_attempts_count") == len(tasks)
    assert total(workers, "roller_task_attempts_sum") == len(tasks)
    assert sum(total(s, "roller_submit_attempts_total", result="delivered")
               for s in (listener, workers)) == len(tasks)
    # nobody is proving any more: the busy gauge is back to 0 on every slot
    assert workers["roller_slot_proving"] and total(workers, "roller_slot_proving") == 0


def test_every_dashboard_metric_exists_in_a_real_scrape(ops_run: OpsRun) -> None:
    listener, workers = both(ops_run)
    scraped = set(listener) | set(workers)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"\broller_[a-z_]+", e)}
    assert used, "the dashboard queries no roller metric"
    # The GPU panels' metrics exist only where NVML is (not on this CPU host): they must at
    # least be metrics the workers define (tests/test_gpu.py exports them through a fake NVML).
    defined = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    gpu_only = {name for name in used if name.startswith("roller_gpu_")}
    assert gpu_only and gpu_only <= defined, sorted(gpu_only - defined)
    assert not scraped & gpu_only, "a CPU host exports GPU metrics"
    missing = sorted(used - scraped - gpu_only)
    assert not missing, f"dashboard panels point at metrics no endpoint exports: {missing}"


def test_roller_status_shows_each_slot(ops_run: OpsRun) -> None:
    cluster = ops_run.cluster
    out = subprocess.run([sys.executable, "-m", "roller.cli", "status", "--config",
                          str(cluster.config)], capture_output=True, text=True, timeout=60,
                         env=python_env())
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    lines = out.stdout.splitlines()
    assert "outbox backlog 0" in lines[0]
    assert lines[1].split()[:3] == ["SLOT", "QUEUE", "SESSION"]
    for slot in cluster.slots:
        row = next(line for line in lines if line.startswith(slot["name"] + " "))
        assert f" {slot['queue']} " in row and " registered " in row
        assert " idle " in row and " accepted " in row, row
    # while the roller ran, the same table showed a slot proving its current task
    live = ops_run.live_status.splitlines()
    column = next(line for line in live if line.startswith("SLOT")).index("ATTEMPTS")
    proving = [line for line in live if " proving " in line]
    assert proving and all(line[column:].split()[0] == "1" for line in proving), \
        ops_run.live_status
    if os.environ.get("ROLLER_DOCS_STATUS"):
        Path(os.environ["ROLLER_DOCS_STATUS"]).write_text(
            f"{ops_run.live_status}\n\n{out.stdout}")


def test_flower_in_a_browser_lists_proofs_by_task_id(ops_run: OpsRun) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        # `make setup` installs it; in CI a missing browser is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "chromium is not installed (apt-get install chromium)")
    batch = next(t for t in ops_run.tasks if t["type"] == 1)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60000)
        try:
            # Without credentials Chromium gets a 401 and, headless, gives up the navigation.
            anonymous = browser.new_context().new_page()
            statuses: list[int] = []
            anonymous.on("response", lambda r: statuses.append(r.status))
            with pytest.raises(sync_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
                anonymous.goto(f"{ops_run.flower_url}/tasks", timeout=60000)
            assert statuses == [401]
            context = browser.new_context(
                http_credentials={"username": ops_run.flower_auth[0],
                                  "password": ops_run.flower_auth[1]},
                viewport={"width": 1600, "height": 700})
            page = context.new_page()
            page.set_default_timeout(60000)
            answer = page.goto(f"{ops_run.flower_url}/tasks")
            assert answer is not None and answer.status == 200
            row = page.locator("#tasks-table tbody tr", has_text=batch["id"])
            row.wait_for()
            text = row.inner_text()
            assert "SUCCESS" in text and "'batch ws homestead'" in text \
                and ops_run.cluster.slots[1]["name"] in text, text
            shot = ops_run.cluster.workdir / "flower.png"
            page.screenshot(path=str(shot))
            if os.environ.get("ROLLER_DOCS_SCREENSHOT"):
                shutil.copy(shot, os.environ["ROLLER_DOCS_SCREENSHOT"])
        finally:
            browser.close()


def test_flower_keeps_its_state_across_a_restart(ops_run: OpsRun) -> None:
    assert ops_run.cluster.flower is not None
    ops_run.cluster.flower.stop(signal.SIGTERM)
    ops_run.cluster.start_flower()
    answer = requests.get(f"{ops_run.flower_url}/api/tasks", auth=ops_run.flower_auth,
                          timeout=30)
    answer.raise_for_status()
    jobs = answer.json()
    ids = {t["id"] for t in ops_run.tasks}
    listed = {job["args"] for job in jobs.values()}
    assert all(any(task_id in args for args in listed) for task_id in ids), listed
    assert all(job["state"] == "SUCCESS" for job in jobs.values())


def test_no_secret_on_any_flower_page(ops_run: OpsRun) -> None:
    """Every page and API answer Flower serves an operator (after the proofs): none carries
    the Flower password or the keystore password."""
    cfg = load_config(ops_run.cluster.config)
    secrets = {"flower password": ops_run.flower_auth[1],
               "keystore password": cfg.keystore_password or ""}
    assert all(secrets.values())
    for page in ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks",
                 "/api/queues/length"):
        answer = requests.get(f"{ops_run.flower_url}{page}", auth=ops_run.flower_auth,
                              timeout=30)
        assert answer.status_code < 500, (page, answer.status_code)
        for what, value in secrets.items():
            assert value not in answer.text, f"{what} on Flower's {page}"
