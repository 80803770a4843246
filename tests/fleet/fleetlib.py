"""Helpers of the fleet tests: two test hosts on this machine, installed by site.yml for real.

Two kinds of test host, one interface (Host):
- Host (roller_process_manager: supervisor): a root prefix under the test's temporary
  directory, reached over Ansible's local connection, managed by its own supervisord with its
  own Redis broker, listener, workers and Flower on loopback ports.
- SystemdHost (roller_process_manager: systemd): a systemd-nspawn container booting systemd
  (see nspawn.py), reached over an nsenter connection; everything on the production paths
  (/opt/roller, /etc/roller, user roller) and default ports, in its own network namespace.

host-a has two GPU slots, host-b one. One devnet (coordinator + L2 node, native verifier)
serves both. Failure model: every command and wait is bounded; a host that does not stop in
time is killed (supervisord) or powered off and then killed (containers).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roller.ledger import TaskLedger
from roller.localrun import DevnetProcess, free_port, wait_for

from .nspawn import WHEELHOUSE, Container

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ops" / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOK = BIN / "ansible-playbook"
BLOCKS = ROOT / "roller" / "devnet" / "data" / "chain-534352"
OLD_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
NEW_VERSION = f"{OLD_VERSION}.post1"
KEYSTORE_PASSWORD = "fleet-keystore-" + os.urandom(6).hex()
BROKER_PASSWORD = "fleet-broker-" + os.urandom(8).hex()
FLOWER_PASSWORD = "fleet-flower-" + os.urandom(6).hex()


@dataclass
class Host:
    name: str
    prefix: Path
    gpus: list[int]
    broker_port: int
    flower_port: int
    extra_vars: dict[str, Any] = field(default_factory=dict)  # per-host inventory overrides

    @property
    def broker_url(self) -> str:
        return f"redis://:{BROKER_PASSWORD}@127.0.0.1:{self.broker_port}/0"

    def ledger(self) -> TaskLedger:
        return TaskLedger.from_url(self.broker_url)

    def slots(self) -> list[str]:
        return [f"{self.name}-gpu{g}" for g in self.gpus]

    def programs(self) -> list[str]:
        return [*(f"roller-worker-{g}" for g in self.gpus), "roller-listener", "roller-flower"]

    def supervisorctl(self, *args: str) -> str:
        out = subprocess.run([str(self.prefix / "opt/roller/supervisor/bin/supervisorctl"),
                              "-c", str(self.prefix / "etc/roller/supervisord.conf"), *args],
                             capture_output=True, text=True, timeout=60)
        return out.stdout

    @property
    def opt(self) -> str:
        """/opt/roller as the host's own commands see it."""
        return str(self.prefix / "opt/roller")

    def exec(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command on the host."""
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)

    def celery(self, *args: str) -> str:
        """The host's celery CLI (roller-celery: its config and secrets)."""
        out = self.exec(f"{self.opt}/bin/roller-celery", *args)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def pids(self) -> dict[str, int]:
        return {p: int(self.supervisorctl("pid", p).strip() or 0) for p in self.programs()}

    def installed_version(self) -> str:
        return self.exec(f"{self.opt}/venv/bin/python", "-I", "-c",
                         "import importlib.metadata as m; print(m.version('roller'))",
                         timeout=60).stdout.strip()

    def inventory_vars(self) -> dict[str, Any]:
        return {"roller_prefix": str(self.prefix), "roller_gpus": self.gpus,
                "roller_broker_port": self.broker_port, "roller_flower_port": self.flower_port,
                "roller_metrics_listener_port": free_port(),
                "roller_metrics_worker_port": free_port(), **self.extra_vars}

    def keystores(self) -> list[Path]:
        return sorted((self.prefix / "var/lib/roller/keystore").glob("keystore-gpu*.json"))

    def log(self, program: str) -> str:
        path = self.prefix / "var/log/roller" / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop this host's supervisord (it stops its programs first)."""
        pidfile = self.prefix / "run/roller/supervisord.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not _alive(pid), 90, f"supervisord of {self.name} to stop")
        except ProcessLookupError:
            return
        except Exception:
            os.kill(pid, signal.SIGKILL)


@dataclass
class SystemdHost(Host):
    """A test host booting systemd in a container; broker_port is this machine's end of a
    relay to the host's Redis (6379 inside). Programs are named as under supervisor and
    mapped to units (roller-worker-K -> roller-worker@K)."""

    container: Container | None = None

    @property
    def box(self) -> Container:
        assert self.container is not None
        return self.container

    @property
    def opt(self) -> str:
        return "/opt/roller"

    @staticmethod
    def unit(program: str) -> str:
        if program.startswith("roller-worker-"):
            return f"roller-worker@{program.rsplit('-', 1)[1]}"
        return program

    def exec(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.box.run(*argv, timeout=timeout, check=False)

    def systemctl(self, *args: str) -> str:
        return self.exec("systemctl", *args, timeout=60).stdout.strip()

    def pids(self) -> dict[str, int]:
        return {p: int(self.systemctl("show", "-p", "MainPID", "--value", f"{self.unit(p)}.service")
                       or 0) for p in self.programs()}

    def active(self, program: str) -> str:
        return self.systemctl("is-active", f"{self.unit(program)}.service")

    def log(self, program: str) -> str:
        """The unit's lines in journald (what the roller printed, and systemd's own)."""
        return self.exec("journalctl", "-q", "--no-pager", "-o", "cat", "-u",
                         f"{self.unit(program)}.service", timeout=60).stdout

    def inventory_vars(self) -> dict[str, Any]:
        # Production paths, user and ports: each host has its own namespace. The host has no
        # network but its loopback, so pip installs from the image's wheelhouse.
        return {"ansible_connection": "community.docker.nsenter",
                "ansible_nsenter_pid": f"{{{{ lookup('file', '{self.box.leader_file}') }}}}",
                "ansible_python_interpreter": "/usr/bin/python3",
                "roller_process_manager": "systemd",
                "roller_manage_user": True,
                "roller_user": "roller", "roller_group": "roller",
                "roller_listener_user": "roller-listener",
                "roller_broker_user": "redis",
                "roller_broker_redis_server": "/usr/bin/redis-server",
                "roller_pip_extra_args": f"--no-index --find-links /{WHEELHOUSE}",
                "roller_params_path": "/var/lib/roller/params",
                "roller_gpus": self.gpus, **self.extra_vars}

    def stop(self) -> None:
        self.box.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Fleet:
    workdir: Path
    devnet: DevnetProcess
    hosts: list[Host]
    inventory: Path
    new_wheel: Path
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    def playbook(self, name: str, *extra: str, log: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   ANSIBLE_HOME=str(self.workdir / "ansible-home"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1")
        # The hosts' commands must see only their own venv: a source tree on PYTHONPATH (with
        # the egg-info that building the wheel leaves) would make pip skip the roller package.
        env.pop("PYTHONPATH", None)
        self.outputs.append(log)
        return subprocess.Popen([str(PLAYBOOK), "-i", str(self.inventory), name, *extra],
                                cwd=ANSIBLE_DIR, env=env, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)

    def push(self, first_block: int, count: int) -> str:
        hashes = [block_hash(n) for n in range(first_block, first_block + count)]
        return str(self.devnet.control("push_task", {"type": 0, "block_hashes": hashes})["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return next(t for t in self.devnet.ledger()["tasks"] if t["id"] == task_id)

    def host_of_slot(self, slot: str) -> Host:
        return next(h for h in self.hosts if slot in h.slots())

    def logs(self) -> str:
        parts = [f"==> devnet\n{self.devnet.proc.output()[-4000:]}"]
        for out in self.outputs:
            parts.append(f"==> {out.name}\n{out.read_text(errors='replace')[-8000:]}")
        for host in self.hosts:
            for program in host.programs():
                parts.append(f"==> {host.name} {program}\n{host.log(program)[-3000:]}")
        return "\n".join(parts)


def block_hash(number: int) -> str:
    with gzip.open(BLOCKS / f"block_{number}.json.gz", "rt") as fh:
        return str(json.load(fh)["header"]["hash"])


def build_wheel(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(src)], check=True, timeout=600, capture_output=True)
    return next(out.glob("roller-*.whl"))


def new_version_tree(dest: Path) -> Path:
    """The project with its version bumped: what an upgrade installs."""
    dest.mkdir()
    shutil.copy(ROOT / "celeryconfig.py", dest)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{OLD_VERSION}"' in pyproject
    (dest / "pyproject.toml").write_text(
        pyproject.replace(f'version = "{OLD_VERSION}"', f'version = "{NEW_VERSION}"', 1))
    shutil.copytree(ROOT / "roller", dest / "roller",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "lib"))
    return dest


def write_inventory(path: Path, devnet: DevnetProcess, wheel: Path,
                    library: Path, params: Path, hosts: list[Host]) -> None:
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "roller_process_manager": "supervisor",
                "roller_become": False,
                "roller_manage_user": False,
                "roller_manage_packages": False,
                "roller_user": "root",
                "roller_group": "root",
                "roller_listener_user": "root",
                "roller_broker_user": "root",
                "roller_broker_redis_server": shutil.which("redis-server"),
                "roller_wheel": str(wheel),
                "roller_native_library": str(library),
                "roller_coordinator_url": devnet.ws_url,
                "roller_trace_endpoint": devnet.l2_url,
                "roller_keystore_password": KEYSTORE_PASSWORD,
                "roller_broker_password": BROKER_PASSWORD,
                "roller_flower_password": FLOWER_PASSWORD,
                "roller_params_path": str(params),
                "roller_workers_stop_timeout": 300,
                "roller_workers_drain_timeout": 300,
                "roller_workers_drain_poll_seconds": 2,
                "roller_config_extra": {"retry": {"submit_backoff_seconds": 0.5,
                                                  "submit_backoff_max_seconds": 2,
                                                  "reconnect_backoff_seconds": 0.2,
                                                  "reconnect_backoff_max_seconds": 2}},
            },
            "children": {
                "roller_hosts": {"hosts": {h.name: h.inventory_vars() for h in hosts}},
                "roller_brokers": {"children": {"roller_hosts": {}}},
            },
        }
    }
    path.write_text(json.dumps(inventory, indent=2))
    path.chmod(0o600)
