"""The systemd units the roles install: rendered by ops/ansible/units.yml, then checked with
`systemd-analyze verify` (no systemd as PID 1 needed) and for the settings that keep a proof
alive across a stop."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[1] / "ops" / "ansible"
PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not PLAYBOOK.exists(),
                                reason="ansible not installed: pip install -e '.[fleet]'")]


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("units")
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    env = dict(os.environ, PATH=f"{PLAYBOOK.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_HOME=str(out / ".ansible"))
    # Real executables, so verify can check every ExecStart.
    args = ["-e", f"roller_units_out={out}", "-e", f"roller_venv={sys.prefix}",
            "-e", f"roller_broker_redis_server={redis_server}", "-e", "roller_node=host-a"]
    run = subprocess.run([str(PLAYBOOK), "units.yml", *args], cwd=ANSIBLE_DIR, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # systemd-analyze verifies an instance of the template.
    shutil.copy(out / "roller-worker@.service", out / "roller-worker@3.service")
    return out


def parse(path: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(strict=False, interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    cfg.read(path)
    return cfg


def test_units_pass_systemd_analyze_verify(units: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze missing: apt-get install systemd")
    names = ["roller-worker@3.service", "roller-listener.service", "roller-flower.service",
             "roller-redis.service"]
    run = subprocess.run([exe, "verify", *(str(units / n) for n in names)],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0 and "Failed to initialize manager" in run.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr
    # Unknown keys and bad values are only warnings to verify: there must be none.
    assert "roller" not in run.stderr, run.stderr


def test_worker_unit_stops_warm_and_pins_its_gpu(units: Path) -> None:
    svc = parse(units / "roller-worker@.service")["Service"]
    assert "-Q gpu%i -n gpu%i@host-a -P prefork -c 1 -E" in svc["ExecStart"]
    assert "Environment=CUDA_VISIBLE_DEVICES=%i " in (units / "roller-worker@.service").read_text()
    assert svc["KillSignal"] == "SIGTERM" and svc["KillMode"] == "mixed"
    assert int(svc["TimeoutStopSec"]) >= 3600
    assert svc["OOMPolicy"] == "continue" and svc["Restart"] == "on-failure"
    assert "REMAP_SIGTERM" not in (units / "roller-worker@.service").read_text()
    assert svc["EnvironmentFile"].endswith("/roller.env")


def test_listener_and_flower_units(units: Path) -> None:
    listener = parse(units / "roller-listener.service")["Service"]
    assert "-m roller.listener --config /etc/roller/config.json" in listener["ExecStart"]
    assert listener["Restart"] == "on-failure"
    flower = parse(units / "roller-flower.service")["Service"]
    assert " -A roller flower --address=127.0.0.1 " in flower["ExecStart"]
    redis = parse(units / "roller-redis.service")["Service"]
    assert redis["ExecStart"].endswith("/etc/roller/redis.conf")
