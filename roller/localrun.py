"""Running the roller's processes on one machine: Redis, the devnet, listener and workers.

Shared by `roller demo` and the end-to-end and fault tests, so both exercise the very
processes an operator runs (`python -m roller.listener`, `celery -A roller worker -Q gpuN`).
Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

from roller.errors import RollerError
from roller.forks import PRE_FORK

MOCK_VK = "mock_vk"  # roller.devnet.verifier's (the runtime never imports the devnet)

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise RollerError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    """A child process whose output goes to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=self.env, cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.popen is None:
            return None
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        if self._log is not None:
            self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group, as a power cut to this component would."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class RedisServer:
    """A private redis-server with AOF persistence, as our setup configures production: every
    write fsynced, because a task record lost with a crashed Redis is a task the coordinator
    never sends again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RollerError("redis-server not found: install it (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [exe, "--port", str(self.port), "--bind", HOST, "--dir", str(self.workdir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--maxmemory-policy", "noeviction", "--protected-mode", "yes"]
        self.proc = Proc("redis", argv, self.workdir / "redis.log", python_env()).start()
        client = redis.Redis(host=HOST, port=self.port)
        wait_for(lambda: self._ping(client), timeout, f"redis on port {self.port}")
        return self

    @staticmethod
    def _ping(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def write_config(path: Path, *, coordinator_url: str, trace_endpoint: str, broker_url: str,
                 slots: Sequence[dict[str, Any]], params_dir: Path, password: str,
                 extra: dict[str, Any] | None = None,
                 forks: Sequence[str] = (PRE_FORK,)) -> Path:
    """The roller's config for a local cluster; `forks`: the hard forks it holds (a config
    that names none holds homestead, as the seed's)."""
    prover: dict[str, Any] = {"params_path": str(params_dir), "prove_type": 0}
    if list(forks) != [PRE_FORK]:
        prover["forks"] = [{"name": f} for f in forks]
    cfg: dict[str, Any] = {
        "roller_name": "devnet-roller",
        "keystore_path": str(path.parent / "keystore.json"),
        "keystore_password": password,
        "coordinator_url": coordinator_url,
        "trace_endpoint": trace_endpoint,
        "db_path": str(path.parent / "roller.db"),
        "broker_url": broker_url,
        "prover": prover,
        "slots": list(slots),
        # Ephemeral metrics ports: parallel clusters never fight over (or serve) the defaults.
        "metrics": {"listener_port": 0, "worker_port": 0},
    }
    cfg.update(extra or {})
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path


def listener_proc(config: Path, logdir: Path, env: dict[str, str] | None = None) -> Proc:
    """`python -m roller.listener --config <file>` exactly as the README shows it: the
    config comes from the command line only, never from $ROLLER_CONFIG."""
    child_env = python_env(env)
    child_env.pop("ROLLER_CONFIG", None)
    return Proc("listener", [sys.executable, "-m", "roller.listener", "--config", str(config)],
                logdir / "listener.log", child_env)


def worker_proc(config: Path, queue: str, logdir: Path, env: dict[str, str] | None = None,
                name: str | None = None, app: str = "roller") -> Proc:
    """`celery -A roller worker -Q <queue>` exactly as an operator runs it (`app`: a test
    module that wraps the roller app, for fault injection)."""
    celery = Path(sys.executable).with_name("celery")
    argv = [str(celery), "-A", app, "worker", "-Q", queue, "-n", f"{name or queue}@%h",
            "-P", "prefork", "-c", "1", "-E", "--loglevel", "INFO", "--without-mingle",
            "--without-gossip"]
    return Proc(f"worker-{queue}", argv, logdir / f"worker-{name or queue}.log",
                python_env({"ROLLER_CONFIG": str(config), **(env or {})}))


def flower_proc(config: Path, logdir: Path, no_auth: bool = False) -> Proc:
    """`roller flower` as an operator runs it (`no_auth` for the devnet only)."""
    argv = [sys.executable, "-m", "roller.cli", "flower", "--config", str(config)]
    return Proc("flower", argv + (["--no-auth"] if no_auth else []), logdir / "flower.log",
                python_env({"ROLLER_CONFIG": str(config)}))


class DevnetProcess:
    """`python -m roller.devnet` as a separate process, with its control API."""

    def __init__(self, workdir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
                 ) -> None:
        self.workdir = workdir
        self.ready_file = workdir / "devnet-ready.json"
        argv = [sys.executable, "-m", "roller.devnet", "--host", HOST, "--ws-port", "0",
                "--l2-port", "0", "--control-port", "0", "--ready-file", str(self.ready_file),
                *args]
        self.proc = Proc("devnet", argv, workdir / "devnet.log", python_env(env))
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 120.0) -> DevnetProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self.proc.start()
        wait_for(lambda: self.ready_file.exists() or not self.proc.alive(), timeout,
                 "the devnet to listen")
        if not self.ready_file.exists():
            raise RollerError(f"devnet exited early:\n{self.proc.output()[-3000:]}")
        self.info = json.loads(self.ready_file.read_text())
        return self

    @property
    def ws_url(self) -> str:
        return str(self.info["ws_url"])

    @property
    def coordinator_url(self) -> str:
        """The URL a roller config names: ws:// or, with --protocol http-*, http://."""
        return str(self.info.get("coordinator_url") or self.info["ws_url"])

    @property
    def l2_url(self) -> str:
        return str(self.info["l2_url"])

    def control(self, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0
                ) -> Any:
        import requests

        url = f"{self.info['control_url'].rstrip('/')}/{path.lstrip('/')}"
        if body is None:
            resp = requests.get(url, timeout=timeout)
        else:
            resp = requests.post(url, json=body, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def ledger(self) -> dict[str, Any]:
        return dict(self.control("ledger"))

    def stop(self) -> None:
        self.proc.stop()


def demo_slots(workdir: Path, chunk_slots: int = 2, batch_slots: int = 1) -> list[dict[str, Any]]:
    """Chunk slots on gpu0..gpuN-1, then batch slots on the following queues."""
    slots = []
    for i in range(chunk_slots + batch_slots):
        kind = "chunk" if i < chunk_slots else "batch"
        slots.append({"name": f"{kind}-gpu{i}", "queue": f"gpu{i}", "gpu": i,
                      "prove_type": 0 if kind == "chunk" else 1,
                      "keystore_path": str(workdir / f"keystore-gpu{i}.json")})
    return slots


class LocalCluster:
    """Redis + devnet + listener + one worker per slot queue, all real processes."""

    def __init__(self, workdir: Path, *, slots: list[dict[str, Any]], params_dir: Path,
                 devnet_args: Sequence[str] = (), config_extra: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, forks: Sequence[str] = ()) -> None:
        self.workdir = workdir
        # The hard forks the roller holds; default: every fork the devnet's tasks name.
        self.forks = list(forks)
        self.slots = slots
        self.params_dir = params_dir
        self.env = env or {}
        self.redis = RedisServer(workdir / "redis")
        self.devnet = DevnetProcess(workdir, ["--params-dir", str(params_dir), *devnet_args],
                                    self.env)
        self.config_extra = config_extra or {}
        self.config = workdir / "config.json"
        self.listener: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self.flower: Proc | None = None

    def start(self, start_roller: bool = True) -> LocalCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.devnet.start()
        extra = dict(self.config_extra)
        if (self.devnet.info.get("verifier") == "stand-in"
                and str(self.devnet.info.get("protocol", "ws")).startswith("http")):
            # A coordinator with a mock verifier takes only `mock_vk` at an H3+ login (as
            # Scroll's mock_verifier build): an operator names it, so does this cluster.
            extra["coordinator"] = {"vks": [MOCK_VK], **extra.get("coordinator", {})}
        write_config(self.config, coordinator_url=self.devnet.coordinator_url,
                     trace_endpoint=self.devnet.l2_url, broker_url=self.redis.url,
                     slots=self.slots, params_dir=self.params_dir,
                     password=os.urandom(12).hex(), extra=extra,
                     forks=self.forks or self.devnet.info.get("forks", [PRE_FORK]))
        if start_roller:
            self.start_roller()
        return self

    def start_roller(self) -> None:
        for queue in dict.fromkeys(s["queue"] for s in self.slots):
            self.start_worker(queue)
        self.start_listener()

    def start_listener(self) -> Proc:
        self.listener = listener_proc(self.config, self.workdir, self.env).start()
        return self.listener

    def start_worker(self, queue: str, env: dict[str, str] | None = None, app: str = "roller"
                     ) -> Proc:
        self.workers[queue] = worker_proc(self.config, queue, self.workdir,
                                          {**self.env, **(env or {})}, app=app).start()
        return self.workers[queue]

    def start_flower(self, no_auth: bool = False, timeout: float = 60.0) -> Proc:
        """Flower, up before the roller starts so it sees every job's events."""
        import requests

        cfg = json.loads(self.config.read_text()).get("flower", {})
        url = f"http://{cfg.get('address', HOST)}:{cfg.get('port', 5555)}/healthcheck"
        proc = self.flower = flower_proc(self.config, self.workdir, no_auth).start()

        def up() -> bool:
            if not proc.alive():
                raise RollerError(f"Flower exited:\n{proc.output()[-3000:]}")
            try:
                return requests.get(url, timeout=5).ok
            except requests.RequestException:
                return False

        wait_for(up, timeout, f"Flower at {url}", interval=0.5)
        return proc

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.devnet.ledger()["tasks"])

    def wait_tasks(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float,
                   on_poll: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        def check() -> bool:
            if self.listener is not None and not self.listener.alive():
                raise RollerError(f"the listener exited:\n{self.listener.output()[-2000:]}")
            tasks = self.tasks()
            if on_poll is not None:
                on_poll(tasks)
            return done(tasks)

        wait_for(check, timeout, "the devnet tasks to finish", interval=1.0)

    def logs(self) -> str:
        return "\n".join(f"==> {p.name}\n{p.read_text(errors='replace')}"
                         for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        for proc in [self.listener, *self.workers.values(), self.flower]:
            if proc is not None:
                proc.stop()
        self.devnet.stop()
        self.redis.stop()
