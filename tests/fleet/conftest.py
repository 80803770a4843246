"""The fleet fixtures: two test hosts installed by ops/ansible/site.yml (see fleetlib).

`fleet`: hosts under supervisord (root prefixes on this machine); `systemd_fleet`: hosts that
boot systemd in systemd-nspawn containers (nspawn.py). Both are set up the same way: wheels
built, devnet started, site.yml run, circuits built in the background meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from roller.ffi import default_library_path
from roller.localrun import DevnetProcess, free_port

from . import nspawn
from .fleetlib import (
    PLAYBOOK,
    ROOT,
    Fleet,
    Host,
    SystemdHost,
    build_wheel,
    new_version_tree,
    write_inventory,
)

# (workdir, devnet, params, timings, hosts): appends each host as soon as it exists, so that
# a failure half-way still stops the hosts made so far.
HostsFactory = Callable[[Path, DevnetProcess, Path, dict[str, float], list[Host]], None]


@contextlib.contextmanager
def installed_fleet(workdir: Path, make_hosts: HostsFactory) -> Iterator[Fleet]:
    started = time.monotonic()
    library = workdir / "libroller_prover.so"
    shutil.copy(default_library_path(), library)  # a rebuild elsewhere must not change it
    params = workdir / "params"
    params.mkdir()
    # Circuits are built once, in the background while the wheels build and site.yml runs
    # (nothing proves or verifies before site.yml has finished).
    prepare = subprocess.Popen(
        [sys.executable, "-c", "import sys; from roller.ffi import load_prover; "
         "load_prover(sys.argv[1], sys.argv[2]).verify_chunk_proof('{}', '{}')",
         str(library), str(params)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devnet: DevnetProcess | None = None
    hosts: list[Host] = []
    timings: dict[str, float] = {}
    try:
        old_wheel = build_wheel(ROOT, workdir / "dist-old")
        new_wheel = build_wheel(new_version_tree(workdir / "src-new"), workdir / "dist-new")
        devnet = DevnetProcess(workdir / "devnet", ["--no-chunk-tasks", "--verifier", "native",
                                                    "--params-dir", str(params),
                                                    "--dispatch-interval", "0.3"],
                               {"ROLLER_PROVER_LIB": str(library)}).start()
        make_hosts(workdir, devnet, params, timings, hosts)
        inventory = workdir / "inventory.json"
        write_inventory(inventory, devnet, old_wheel, library, params, hosts)
        fleet = Fleet(workdir, devnet, hosts, inventory, new_wheel, timings)
        timings["prepare_s"] = time.monotonic() - started
        t0 = time.monotonic()
        site = fleet.playbook("site.yml", log=workdir / "site.log")
        rc = site.wait(timeout=900)
        timings["site_s"] = time.monotonic() - t0
        assert rc == 0, fleet.logs()
        assert prepare.wait(timeout=600) == 0, "building the circuits failed"
        yield fleet
    finally:
        if prepare.poll() is None:
            prepare.kill()
        for host in hosts:
            host.stop()
        if devnet is not None:
            devnet.stop()
        print(f"\nfleet timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")


def _need_ansible() -> None:
    if not PLAYBOOK.exists():
        pytest.skip("ansible not installed: pip install -e '.[fleet]'")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _need_ansible()
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server missing: apt-get install redis-server")

    def hosts(workdir: Path, devnet: DevnetProcess, params: Path, timings: dict[str, float],
              made: list[Host]) -> None:
        made += [Host("host-a", workdir / "host-a", [0, 1], free_port(), free_port()),
                 Host("host-b", workdir / "host-b", [0], free_port(), free_port())]

    with installed_fleet(tmp_path_factory.mktemp("fleet"), hosts) as f:
        yield f


@pytest.fixture(scope="module")
def systemd_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    _need_ansible()
    reason = nspawn.unavailable()
    if reason is not None:
        pytest.skip(reason)

    def hosts(workdir: Path, devnet: DevnetProcess, params: Path, timings: dict[str, float],
              made: list[Host]) -> None:
        t0 = time.monotonic()
        image = nspawn.root_image()
        timings["image_s"] = time.monotonic() - t0
        timings["image_build_s"] = nspawn.image_build_seconds(image)
        # The devnet listens on this machine's loopback; inside a host the same ports lead
        # to it through relays, so the URLs in the config are the devnet's own.
        devnet_ports = [int(urlparse(u).port or 0) for u in (devnet.ws_url, devnet.l2_url)]
        t0 = time.monotonic()
        # Production defaults on both hosts (visibility timeout a day, reconcile every 30 s):
        # a dead worker's task is re-driven from its lease, not by kombu's redelivery.
        for name, gpus, extra in (("host-a", [0, 1], {}), ("host-b", [0], {})):
            broker_port = free_port()
            box = nspawn.Container.create(name, image, workdir, inward=devnet_ports,
                                          outward={6379: broker_port},
                                          binds=[(params, "/var/lib/roller/params")])
            host = SystemdHost(name, box.root, gpus, broker_port, 5555, extra, container=box)
            made.append(host)
            box.start()
        timings["hosts_boot_s"] = time.monotonic() - t0

    with installed_fleet(tmp_path_factory.mktemp("systemd-fleet"), hosts) as f:
        yield f
