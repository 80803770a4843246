"""The alerting rules (ops/prometheus/roller-alerts.yml): promtool checks them and runs one
unit-test file per alert (ops/prometheus/tests/<alert>.yml), each with a case where the
alert fires and one where it stays silent; every alert names a runbook section of the README
and only metrics the roller exports.

promtool comes from Debian's `prometheus` package (`make setup-dev` installs it): without it
these tests fail, they do not skip. No Prometheus server runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from roller.observe import metrics

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "ops" / "prometheus"
RULES = PROM / "roller-alerts.yml"
TESTS = PROM / "tests"


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


ALERTS = _alerts()
NAMES = [a["alert"] for a in ALERTS]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: install Debian's prometheus package (make setup-dev)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120,
                          cwd=PROM)


@pytest.mark.integration
def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in rules.stdout
    config = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 1 rule files found" in config.stdout


@pytest.mark.integration
@pytest.mark.parametrize("alert", NAMES)
def test_alert_fires_and_stays_silent(alert: str) -> None:
    out = promtool("test", "rules", str(TESTS / f"{alert}.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("alert", NAMES)
def test_each_alert_has_a_firing_and_a_silent_case(alert: str) -> None:
    spec = yaml.safe_load((TESTS / f"{alert}.yml").read_text())
    assert spec["rule_files"] == ["../roller-alerts.yml"]
    checks = [check for test in spec["tests"] for check in test["alert_rule_test"]]
    assert {c["alertname"] for c in checks} == {alert}, "one alert per test file"
    assert any(c["exp_alerts"] for c in checks), "no case where it fires"
    assert any(not c["exp_alerts"] for c in checks), "no case where it stays silent"
    # the silent case's own test: the last evaluation of a test without any expected alert
    assert any(all(not c["exp_alerts"] for c in t["alert_rule_test"]) for t in spec["tests"])


def test_the_broker_memory_alert_fires_before_noeviction_refuses_writes() -> None:
    """At maxmemory a noeviction Redis refuses every write (no task can be recorded): the
    alert's test climbs all the way to the limit, and the alert fires with room left."""
    spec = yaml.safe_load((TESTS / "RollerRedisMemoryHigh.yml").read_text())
    climb = next(t for t in spec["tests"] if "climb" in t["name"])
    series = {s["series"].split("{")[0]: s["values"] for s in climb["input_series"]}
    ramp = re.fullmatch(r"(\d+)\+(\d+)x(\d+)", series["roller_redis_used_memory_bytes"])
    assert ramp, "the climb is a ramp: 'start+step x count'"
    start, step, count = (int(v) for v in ramp.groups())
    limit = int(series["roller_redis_maxmemory_bytes"].split("x")[0])
    assert start + step * count >= limit, "the climb must reach maxmemory"
    fired = min(int(c["eval_time"].rstrip("m")) for c in climb["alert_rule_test"]
                if c["exp_alerts"])
    assert start + step * fired < limit


def test_every_test_file_is_an_alert() -> None:
    assert sorted(p.stem for p in TESTS.glob("*.yml")) == sorted(NAMES)


def _watching_it() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Watching it\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


@pytest.mark.parametrize("alert", ALERTS, ids=NAMES)
def test_each_alert_has_a_summary_and_a_runbook_in_the_readme(alert: dict[str, Any]) -> None:
    notes = alert["annotations"]
    assert notes["summary"].strip()
    assert alert["labels"]["severity"] in ("warning", "critical")
    assert notes["runbook"] == f"README.md#{alert['alert'].lower()}"
    headings = re.findall(r"^#### (\w+)$", _watching_it(), re.MULTILINE)
    assert alert["alert"] in headings, "README 'Watching it' has no section for it"


def _exported() -> set[str]:
    """Every sample name the roller's endpoints can expose."""
    names: set[str] = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            base = obj._name
            if isinstance(obj, Counter):
                names.add(f"{base}_total")
            elif isinstance(obj, Histogram):
                names.update(f"{base}_{s}" for s in ("bucket", "sum", "count"))
            else:
                names.add(base)
    families = metrics.LedgerCollector(None, []).describe()  # type: ignore[arg-type]
    return names | {f.name for f in families}


def test_rules_use_only_metrics_the_roller_exports() -> None:
    exported = _exported()
    used = {name for a in ALERTS for name in re.findall(r"\broller_[a-z_]+", a["expr"])}
    assert len(used) >= 12
    assert not used - exported, f"unknown metrics in the rules: {sorted(used - exported)}"


@pytest.mark.integration
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every Grafana query is valid PromQL: promtool checks them as recording rules."""
    import json

    dashboard = json.loads((ROOT / "ops" / "grafana" / "roller-dashboard.json").read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m")
             for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
