"""An operator's mistakes, caught early: every check of `roller config check` and every
entry point's startup error, each as one line naming the problem and a non-zero exit.

Real commands in subprocesses (the way an operator meets them); no Redis, coordinator or
prover needed: each mistake stops the command before it would use them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from roller.keys import load_or_create_keystore
from roller.localrun import free_port, python_env

pytestmark = pytest.mark.integration

PASSWORD = "operator-password"


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "roller_name": "op", "keystore_path": str(tmp_path / "keystore.json"),
        "keystore_password": PASSWORD, "coordinator_url": "ws://127.0.0.1:9/",
        "trace_endpoint": "http://127.0.0.1:9/", "broker_url": "redis://127.0.0.1:9/0",
        "prover": {"params_path": str(tmp_path / "params")}, **extra,
    }


def write(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def keystore(path: Path, password: str = PASSWORD) -> None:
    load_or_create_keystore(path, password, scrypt_n=2**10)


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    child = python_env(env)
    child.pop("ROLLER_CONFIG", None)
    child.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=child)


def roller(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "roller.cli", *args], env)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    return lines[0]


# -- roller config check ---------------------------------------------------------------------

def check(tmp_path: Path, cfg: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return roller("config", "check", "--config", str(write(tmp_path, cfg)), *extra)


def test_check_passes_a_good_config(tmp_path: Path) -> None:
    keystore(tmp_path / "keystore.json")
    out = check(tmp_path, config(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: slots op keystore" in out.stdout and out.stdout.rstrip().endswith("ok")


@pytest.mark.parametrize(("case", "expect"), [
    ("mode 0644", "has unsafe mode 0644"),
    ("garbage", "is not a geth v3 keystore (not JSON"),
    ("directory", "is not a regular file"),
    ("wrong password", "wrong password for keystore"),
])
def test_check_opens_keystores_as_the_listener_does(tmp_path: Path, case: str, expect: str
                                                    ) -> None:
    path = tmp_path / "keystore.json"
    if case == "directory":
        path.mkdir()
    elif case == "garbage":
        path.write_text("not a keystore")
        path.chmod(0o600)
    else:
        keystore(path, "another password" if case == "wrong password" else PASSWORD)
        if case == "mode 0644":
            path.chmod(0o644)
    out = check(tmp_path, config(tmp_path))
    assert out.returncode == 1
    assert expect in one_line(out.stderr.replace("\n1 problem(s)", "")), out.stderr


@pytest.mark.parametrize(("extra", "expect"), [
    ({"sesion_window_minutes": 60},
     "config error: sesion_window_minutes: unknown key; did you mean 'session_window_minutes'?"),
    ({"retry": {"max_prove_attemps": 5}},
     "config error: retry.max_prove_attemps: unknown key; did you mean 'max_prove_attempts'?"),
    ({"flower": {"basic_auth": "admin"}},
     "config error: flower.basic_auth: expected user:password (both non-empty)"),
    ({"retention_hours": 1, "session_window_minutes": 180},
     "config error: retention_hours: 1 h is shorter than session_window_minutes (180 min)"),
])
def test_check_refuses_what_the_processes_refuse(tmp_path: Path, extra: dict[str, Any],
                                                 expect: str) -> None:
    out = check(tmp_path, config(tmp_path, **extra))
    assert out.returncode == 1
    assert one_line(out.stderr) == expect


def test_check_without_a_file_names_both_ways(tmp_path: Path) -> None:
    out = roller("config", "check")
    assert out.returncode == 1
    assert one_line(out.stderr) == ("config error: no config file: pass --config or set "
                                    "ROLLER_CONFIG")


def test_check_flags_a_silent_identity_change(tmp_path: Path) -> None:
    keystore(tmp_path / "keystore.json")  # the seed config's key
    out = check(tmp_path, config(tmp_path, gpus=[0]))  # now one slot with keystore-gpu0.json
    assert out.returncode == 1
    assert "would get a NEW key, while" in out.stderr
    assert str(tmp_path / "keystore.json") in out.stderr


def test_check_connect_names_what_does_not_answer(tmp_path: Path) -> None:
    keystore(tmp_path / "keystore.json")
    port = free_port()
    cfg = config(tmp_path, broker_url=f"redis://127.0.0.1:{port}/0",
                 coordinator_url=f"ws://127.0.0.1:{port}/",
                 trace_endpoint=f"http://127.0.0.1:{port}/")
    out = check(tmp_path, cfg, "--connect")
    assert out.returncode == 1
    for what in ("error: broker: does not answer", "error: coordinator: cannot connect",
                 "error: L2 node: does not answer JSON-RPC"):
        assert what in out.stderr


# -- entry points ----------------------------------------------------------------------------

def test_listener_unknown_log_level(tmp_path: Path) -> None:
    out = run([sys.executable, "-m", "roller.listener", "--config",
               str(write(tmp_path, config(tmp_path))), "--log-level", "foo"])
    assert out.returncode == 2
    assert one_line(out.stderr).startswith("roller listener: log level 'FOO': expected one of")


def test_listener_wrong_keystore_password(tmp_path: Path) -> None:
    keystore(tmp_path / "keystore.json", "another password")
    out = run([sys.executable, "-m", "roller.listener", "--config",
               str(write(tmp_path, config(tmp_path)))])
    assert out.returncode == 2
    assert "wrong password for keystore" in one_line(out.stderr)


def test_listener_with_redis_down_keeps_running_without_tracebacks(tmp_path: Path) -> None:
    keystore(tmp_path / "keystore.json")
    cfg = write(tmp_path, config(tmp_path, metrics={"listener_port": 0, "worker_port": 0}))
    env = python_env()
    env.pop("ROLLER_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "roller.listener", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    lines: list[str] = []
    postponed = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "recovery postponed" in line:
                postponed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The operator-facing line is what this test is about (no counter says it).
        assert postponed.wait(60), "".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(10)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize(("env", "queue", "expect"), [
    ({}, "gpu0", "roller worker: no config: set ROLLER_CONFIG=/path/to/config.json"),
    ({"ROLLER_CONFIG": "BAD"}, "gpu0", "roller worker: config: roller_name: expected a"),
    ({"ROLLER_CONFIG": "GOOD"}, "gpu5", "roller worker: queues ['gpu5'] serve no slot"),
])
def test_worker_refuses_to_start(tmp_path: Path, env: dict[str, str], queue: str, expect: str
                                 ) -> None:
    good = write(tmp_path, config(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**config(tmp_path), "roller_name": 5}))
    paths = {"GOOD": str(good), "BAD": str(bad)}
    celery = str(Path(sys.executable).with_name("celery"))
    out = run([celery, "-A", "roller", "worker", "-Q", queue],
              {k: paths[v] for k, v in env.items()}, timeout=120)
    assert out.returncode == 3
    assert one_line(out.stderr).startswith(expect)


def test_status_without_a_config(tmp_path: Path) -> None:
    out = roller("status")
    assert out.returncode == 1
    assert one_line(out.stderr).startswith("config error: no config file")


def test_devnet_with_a_missing_trace_dir(tmp_path: Path) -> None:
    out = roller("devnet", "--trace-dir", str(tmp_path / "nope"), "--ws-port", "0",
                 "--l2-port", "0", "--control-port", "0")
    assert out.returncode != 0
    assert str(tmp_path / "nope") in one_line(out.stderr)


def test_demo_with_a_bad_chunk_size(tmp_path: Path) -> None:
    out = roller("demo", "--chunk-size", "0", "--workdir", str(tmp_path / "demo"),
                 env={"PATH": os.environ.get("PATH", "")})
    assert out.returncode != 0
    assert "--chunk-size" in one_line(out.stderr)


def test_worker_pins_the_gpu_its_slots_name(tmp_path: Path) -> None:
    from roller.config import parse_config
    from roller.errors import RollerError
    from roller.worker.boot import gpu_for

    cfg = parse_config(config(tmp_path, slots=[
        {"name": "a", "queue": "fast", "gpu": 3, "keystore_path": "a.json"},
        {"name": "b", "queue": "gpu1", "gpu": 5, "keystore_path": "b.json"},
        {"name": "c", "queue": "gpu7", "keystore_path": "c.json"}]), tmp_path, env={})
    assert gpu_for(cfg, ["fast"]) == "3"  # whatever the queue is called
    assert gpu_for(cfg, ["gpu1"]) == "5"  # the slot's gpu wins over the queue's name
    assert gpu_for(cfg, ["gpu7"]) == "7"  # no gpu in the slot: the queue's name
    with pytest.raises(RollerError, match=r"serve slots on GPUs \[3, 5\]"):
        gpu_for(cfg, ["fast", "gpu1"])
