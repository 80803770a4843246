"""Test hosts that boot systemd: systemd-nspawn containers on this machine.

A root image (Debian bookworm minbase with systemd, dbus, redis-server, python3-venv and a
wheelhouse of the roller's dependencies) is built once per machine with debootstrap and
cached under CACHE, keyed by everything it is built from; each test host boots its own copy
as PID 1 in a container with its own network namespace, whose only interface is its own
loopback (nothing in it is reachable from outside this machine, nor from another host).
Relays carry the few connections that cross a namespace: the devnet's ports from inside a
host to this machine's loopback, and a port on this machine's loopback to the host's Redis.

Failure model: every wait is bounded (boot 60 s, power-off 120 s, commands their timeout);
a container that does not power off in time is killed by killing every process of its
cgroup, and its cgroups are removed either way, so a failing test leaves nothing running.
A build interrupted half-way leaves a `*.tmp-PID` directory that the next build deletes;
the image is renamed into place only when complete. Two builds on one machine serialise on
a lock file.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from roller.errors import RollerError
from roller.localrun import wait_for

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ROLLER_TEST_CACHE", "/var/cache/roller-test")) / "nspawn"
SUITE = "bookworm"
# --no-install-recommends: a recommended libnss-mymachines would edit this machine's
# /etc/nsswitch.conf.
# python3-packaging: what Ansible's pip module imports on the host.
PACKAGES = ["redis-server", "python3", "python3-venv", "python3-packaging"]
WHEELHOUSE = "srv/roller-wheels"  # inside the image
CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 with cgroup2 at unified/ on this kind of machine: nspawn needs a cgroup of its
# own in both so that two containers do not share one payload cgroup.
HIERARCHIES = ("unified", "systemd")
# Wheels the image's Python (3.11.2) needs beyond what this machine's resolves: redis
# requires async-timeout below Python 3.11.3.
EXTRA_WHEELS = ["async-timeout>=4.0.3"]
BUILD_VERSION = "1"
PRUNE_AFTER_S = 86400
# What a command run inside a host sees, rather than this process's environment.
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}  # bump to force a rebuild when the steps below change


def tool(name: str) -> str | None:
    """A system command's path; debootstrap and chroot live in sbin, which a PATH may lack."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def unavailable() -> str | None:
    """Why this machine cannot run the systemd test hosts, or None if it can."""
    if os.geteuid() != 0:
        return "systemd test hosts need root (systemd-nspawn)"
    for name in ("systemd-nspawn", "debootstrap", "nsenter", "chroot"):
        if tool(name) is None:
            return f"{name} missing: make system-dev installs systemd-container and debootstrap"
    if not all((CGROUP / h).is_dir() for h in HIERARCHIES) and not (
            CGROUP / "cgroup.controllers").exists():
        return "no cgroup hierarchy usable for systemd-nspawn"
    return None


def _dependencies() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def image_key() -> str:
    inputs = "\n".join([BUILD_VERSION, SUITE, *PACKAGES, *_dependencies(), *EXTRA_WHEELS,
                        f"py{sys.version_info.major}.{sys.version_info.minor}"])
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _run(argv: list[str], timeout: float, log: Path, **kw: object) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                            check=False, **kw).returncode  # type: ignore[call-overload]
    if rc != 0:
        raise RollerError(f"image build step failed rc={rc} step={argv[0]} log={log}")


def root_image() -> Path:
    """The cached root image, built first if this machine has none (~1-2 min)."""
    key = image_key()
    image = CACHE / key
    if (image / "complete").exists():
        (image / "complete").touch()  # last use: what pruning goes by
        return image / "root"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (image / "complete").exists():
            return image / "root"
        for stale in CACHE.glob("*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        # Images of other inputs (another checkout, older dependencies) unused for a day.
        for old in CACHE.glob("*/complete"):
            if time.time() - old.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(old.parent, ignore_errors=True)
        tmp = CACHE / f"{key}.tmp-{os.getpid()}"
        tmp.mkdir()
        log = tmp / "build.log"
        root = tmp / "root"
        started = time.monotonic()
        # debootstrap and dpkg run sbin tools (chroot, ldconfig): a PATH that has them.
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=HOST_ENV["PATH"])
        _run([str(tool("debootstrap")), "--variant=minbase", "--include=systemd,systemd-sysv,dbus",
              SUITE, str(root)], 900, log, env=env)
        # Packages only: nothing may start in the chroot (policy-rc.d 101 = "not now").
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        chroot = [str(tool("chroot")), str(root)]
        _run([*chroot, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
             900, log, env=env)
        _run([*chroot, "apt-get", "clean"], 120, log, env=env)
        policy.unlink()
        # roller-redis is the broker; Debian's own redis-server.service would hold 6379.
        _run(["systemctl", f"--root={root}", "disable", "redis-server.service"], 60, log)
        # The hosts have no network but their loopback: pip installs from this wheelhouse.
        (root / WHEELHOUSE).mkdir(parents=True)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(root / WHEELHOUSE),
              *_dependencies(), *EXTRA_WHEELS], 900, log)
        (tmp / "build_s").write_text(f"{time.monotonic() - started:.1f}\n")
        (tmp / "complete").write_text(key + "\n")
        shutil.rmtree(image, ignore_errors=True)
        tmp.rename(image)
    return image / "root"


def image_build_seconds(root: Path) -> float:
    return float((root.parent / "build_s").read_text())


# -- relays across network namespaces ---------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(netns_pid: int | None) -> socket.socket:
    """A TCP socket in the network namespace of `netns_pid` (None: this process's).

    A socket keeps the namespace it was made in, so it is made in a short-lived thread that
    enters the namespace (setns applies to the calling thread only)."""
    if netns_pid is None:
        return socket.socket()
    made: list[socket.socket] = []
    errors: list[str] = []

    def enter() -> None:
        fd = os.open(f"/proc/{netns_pid}/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                errors.append(os.strerror(ctypes.get_errno()))
                return
            made.append(socket.socket())
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(10)
    if not made:
        raise RollerError(f"no socket in the netns of pid={netns_pid}: {errors}")
    return made[0]


class Relay:
    """Accepts on 127.0.0.1:listen_port in one namespace and connects each connection to
    127.0.0.1:connect_port in another; bytes are copied both ways until either side closes."""

    def __init__(self, listen_ns: int | None, listen_port: int, connect_ns: int | None,
                 connect_port: int) -> None:
        self.connect_ns, self.connect_port = connect_ns, connect_port
        self.server = socket_in(listen_ns)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", listen_port))
        self.server.listen(64)
        self.port = int(self.server.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket_in(self.connect_ns)
            try:
                upstream.connect(("127.0.0.1", self.connect_port))
            except OSError:
                client.close()
                upstream.close()
                continue
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


# -- containers -----------------------------------------------------------------------------

@dataclass
class Container:
    """One test host: a copy of the root image booted with systemd as PID 1.

    `inward` ports of this machine's loopback are reachable on the same port inside the host;
    `outward` maps a port inside the host to one on this machine's loopback."""

    name: str
    root: Path
    workdir: Path
    inward: list[int] = field(default_factory=list)
    outward: dict[int, int] = field(default_factory=dict)
    binds: list[tuple[Path, str]] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    leader: int = 0
    relays: list[Relay] = field(default_factory=list)
    boots: int = 0

    @property
    def machine(self) -> str:
        return f"roller-{self.name}-{os.getpid()}"

    @property
    def leader_file(self) -> Path:
        """Where Ansible's nsenter connection reads the host's PID 1 (it changes at reboot)."""
        return self.workdir / f"{self.name}.leader"

    def cgroups(self) -> list[Path]:
        return [CGROUP / h / self.machine for h in HIERARCHIES]

    @classmethod
    def create(cls, name: str, image: Path, workdir: Path, inward: list[int],
               outward: dict[int, int], binds: list[tuple[Path, str]]) -> Container:
        root = workdir / name
        subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(root)], check=True,
                       timeout=300)
        (root / "etc/hostname").write_text(name + "\n")
        return cls(name, root, workdir, inward, outward, binds)

    def start(self, timeout: float = 60.0) -> None:
        cgroups = self.cgroups()
        for cg in cgroups:
            cg.mkdir(exist_ok=True)

        def own_cgroup() -> None:  # in the child, before exec: nspawn's own cgroup
            for cg in cgroups:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        self.boots += 1
        console = (self.workdir / f"{self.name}.console-{self.boots}.log").open("wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "-M", self.machine, "--register=no",
             "--keep-unit", "--private-network", "-b", "--console=pipe",
             *(f"--bind={src}:{dst}" for src, dst in self.binds)],
            env=dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1"),
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            preexec_fn=own_cgroup)
        console.close()
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        wait_for(lambda: self.proc is not None and self.proc.poll() is None
                 and children.exists() and children.read_text().strip() != ""
                 or self._exited(), timeout, f"the PID 1 of test host {self.name}")
        self.leader = int(children.read_text().split()[0])
        wait_for(lambda: self.system_state() in ("running", "degraded") or self._exited(),
                 timeout, f"test host {self.name} to boot", interval=0.2)
        self.leader_file.write_text(f"{self.leader}\n")
        self.relays = [Relay(self.leader, port, None, port) for port in self.inward]
        self.relays += [Relay(None, host_port, self.leader, inner)
                        for inner, host_port in self.outward.items()]

    def _exited(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RollerError(f"systemd-nspawn of test host {self.name} exited "
                              f"rc={self.proc.returncode}")
        return False

    def system_state(self) -> str:
        return self.run("systemctl", "is-system-running", timeout=10, check=False).stdout.strip()

    def run(self, *argv: str, timeout: float = 60.0, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host (all of its namespaces)."""
        out = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", *argv],
                             capture_output=True, text=True, timeout=timeout, input=input,
                             env=HOST_ENV)
        if check and out.returncode != 0:
            raise RollerError(f"command failed on test host {self.name} rc={out.returncode} "
                              f"argv={' '.join(argv)}: {out.stdout[-2000:]}{out.stderr[-2000:]}")
        return out

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start a command inside the host without waiting for it (output: stdout)."""
        return subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "--", *argv],
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=HOST_ENV)

    def stop(self, timeout: float = 120.0, hard: bool = False) -> None:
        """Power the host off (systemd stops every unit), kill what is left, remove cgroups.
        `hard`: pull the plug instead (every process of the host SIGKILLed at once, no unit
        stopped, nothing flushed that was not on disk already)."""
        for relay in self.relays:
            relay.close()
        self.relays = []
        proc, self.proc = self.proc, None
        if hard:
            self._kill_all()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_all()
                proc.kill()
                proc.wait(30)
        self._kill_all()
        for cg in self.cgroups():
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                cg.rmdir()
        # What a killed nspawn leaves behind: its mount-propagation directory and the lock of
        # this host's root directory.
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / self.machine, ignore_errors=True)
        with contextlib.suppress(OSError):
            st = self.root.stat()
            (Path("/run/systemd/nspawn/locks") / f"inode-{st.st_dev}:{st.st_ino}").unlink()
        self.leader = 0

    def _kill_all(self) -> None:
        for cg in self.cgroups():
            if not cg.exists():
                continue
            for procs in cg.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        # Bounded: the kernel frees killed processes within moments.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                procs.read_text().strip() for cg in self.cgroups() if cg.exists()
                for procs in cg.rglob("cgroup.procs")):
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()
