"""The systemd units the roles install: rendered by ops/ansible/units.yml, then checked with
`systemd-analyze verify` (no systemd as PID 1 needed) and for the settings that keep a proof
alive across a stop."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
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
    assert flower["ExecStart"].endswith("/bin/roller flower --config /etc/roller/config.json")
    redis = parse(units / "roller-redis.service")["Service"]
    assert redis["ExecStart"].endswith("/etc/roller/redis.conf")


# -- issue 25: least privilege and hardening ---------------------------------------------------

HARDENING = {
    "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
    "LockPersonality": "yes", "CapabilityBoundingSet": "", "UMask": "0077",
    "SystemCallFilter": "@system-service",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}
UNITS = ["roller-worker@.service", "roller-listener.service", "roller-flower.service",
         "roller-redis.service"]


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_hardened(units: Path, name: str) -> None:
    svc = parse(units / name)["Service"]
    for key, value in HARDENING.items():
        assert svc.get(key) == value, (name, key, svc.get(key))
    assert svc["ReadWritePaths"], name
    # GPUs: only the workers keep the host's devices, with the reason written in the unit.
    if name.startswith("roller-worker@"):
        assert "PrivateDevices" not in svc
        assert "No PrivateDevices: the prover needs the GPU" in (units / name).read_text()
    else:
        assert svc["PrivateDevices"] == "yes", name


def test_only_the_listener_reads_the_keys(units: Path) -> None:
    listener = parse(units / "roller-listener.service")["Service"]
    assert listener["User"] == "roller-listener"
    assert listener["EnvironmentFile"] == "/etc/roller/listener.env"
    assert listener["ReadWritePaths"] == "/var/lib/roller/keystore"
    for name in ("roller-worker@.service", "roller-flower.service"):
        svc = parse(units / name)["Service"]
        assert svc["User"] == "roller", name
        assert svc["EnvironmentFile"] == "/etc/roller/roller.env", name
        assert "/var/lib/roller/keystore" in svc["InaccessiblePaths"], name
        assert "/etc/roller/listener.env" in svc["InaccessiblePaths"], name
    roles = ANSIBLE_DIR / "roles" / "roller" / "templates"
    workers_env = (roles / "roller.env.j2").read_text()
    assert "ROLLER_KEYSTORE_PASSWORD" not in workers_env
    assert "ROLLER_BROKER_PASSWORD" in workers_env and "ROLLER_FLOWER_PASSWORD" in workers_env
    listener_env = (roles / "listener.env.j2").read_text()
    assert "ROLLER_KEYSTORE_PASSWORD" in listener_env
    assert "FLOWER" not in listener_env


def test_flower_always_through_roller_flower(units: Path) -> None:
    flower = parse(units / "roller-flower.service")["Service"]
    assert flower["ExecStart"].endswith("/bin/roller flower --config /etc/roller/config.json")
    tasks = (ANSIBLE_DIR / "roles" / "roller_flower" / "tasks" / "main.yml").read_text()
    assert "celery -A roller flower" not in tasks and "/bin/roller flower --config" in tasks


def test_flower_without_password_fails_before_touching_a_host(tmp_path: Path) -> None:
    """The check play runs on the controller: a host that cannot be reached is never tried."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    roller_hosts:\n      hosts:\n        gpu-x:\n"
        f"          ansible_host: 127.0.0.1\n          ansible_port: {port}\n"
        "    roller_brokers:\n      children:\n        roller_hosts:\n")
    env = dict(os.environ, PATH=f"{PLAYBOOK.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_HOME=str(tmp_path / ".ansible"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([str(PLAYBOOK), "-i", str(inventory), "site.yml"], cwd=ANSIBLE_DIR,
                         env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "roller_flower_password is not set: set roller_flower_password" in out, out
    assert "UNREACHABLE" not in out and "unreachable=0" in out, out
