"""The README's production commands, run as written (read from the README itself) against a
devnet: config check with --connect, the listener with --config only, two workers, Flower
with basic auth and `roller status --watch`; the devnet's tasks must all be verified."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from roller.localrun import (
    HOST,
    DevnetProcess,
    RedisServer,
    demo_slots,
    free_port,
    python_env,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def production_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Running it in production", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no command block under 'Running it in production'"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()
            if line.strip() and not line.startswith("#")]


@pytest.fixture
def site(tmp_path: Path, params_dir: Path) -> Iterator[tuple[Path, DevnetProcess]]:
    redis_server = RedisServer(tmp_path / "redis").start()
    devnet = DevnetProcess(tmp_path, ["--no-chunk-tasks", "--verifier", "stand-in",
                                      "--dispatch-interval", "0.2"]).start()
    write_config(tmp_path / "config.json", coordinator_url=devnet.ws_url,
                 trace_endpoint=devnet.l2_url, broker_url=redis_server.url,
                 slots=demo_slots(tmp_path, chunk_slots=2, batch_slots=0),
                 params_dir=params_dir, password=os.urandom(8).hex(),
                 extra={"flower": {"port": free_port(), "basic_auth": "ops:readme-secret",
                                   "db_path": str(tmp_path / "flower.db")},
                        "metrics": {"listener_port": 0, "worker_port": 0}})
    try:
        yield tmp_path, devnet
    finally:
        devnet.stop()
        redis_server.stop()


def test_readme_production_commands_work_as_written(site: tuple[Path, DevnetProcess]) -> None:
    workdir, devnet = site
    commands = production_commands()
    assert [c.split()[0] for c in commands][:2] == ["roller", "python"]
    env = python_env()
    env.pop("ROLLER_CONFIG", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    check, *long_running = commands
    done = subprocess.run(["bash", "-c", check], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    procs: list[subprocess.Popen[str]] = []
    logs = []
    try:
        for i, command in enumerate(long_running):
            log = (workdir / f"readme-{i}.log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(["bash", "-c", command], cwd=workdir,
                                          env=env, stdout=log, stderr=subprocess.STDOUT,
                                          text=True, start_new_session=True))
        ids = [devnet.control("push_task", {"type": 0, "block_hashes": [b]})["id"]
               for b in _block_hashes()]

        def verified() -> bool:
            for proc, command in zip(procs, long_running, strict=True):
                assert proc.poll() is None, f"{command!r} exited:\n" + _logs(workdir)
            tasks = {t["id"]: t for t in devnet.control("ledger")["tasks"]}
            return all(tasks[i]["state"] == "verified" for i in ids)

        wait_for(verified, 600, "the pushed tasks to be verified", interval=1.0)
        status = (workdir / f"readme-{len(long_running) - 1}.log")
        wait_for(lambda: "registered" in status.read_text(), 30, "roller status to draw")
        flower_port = json.loads((workdir / "config.json").read_text())["flower"]["port"]
        resp = requests.get(f"http://{HOST}:{flower_port}/healthcheck",
                            auth=("ops", "readme-secret"), timeout=10)
        assert resp.ok
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _block_hashes() -> list[str]:
    from roller.devnet.traces import DEFAULT_TRACE_DIR, read_trace_file

    files = sorted(DEFAULT_TRACE_DIR.glob("block_*.json.gz"))[:2]
    return [json.loads(read_trace_file(f))["header"]["hash"] for f in files]


def _logs(workdir: Path) -> str:
    return "\n".join(f"==> {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted(workdir.glob("readme-*.log")))


def test_the_readme_does_not_need_shared() -> None:
    """Users have no ../shared: nothing the README's commands run may reach for it."""
    for path in ("Makefile", "README.md", ".ci/run"):
        assert "../shared" not in (REPO / path).read_text(), path
    assert shutil.which("bash")
