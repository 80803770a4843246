"""The fleet fixture: two test hosts installed by ops/ansible/site.yml (see fleetlib)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from roller.ffi import default_library_path
from roller.localrun import DevnetProcess, free_port

from .fleetlib import PLAYBOOK, ROOT, Fleet, Host, build_wheel, new_version_tree, write_inventory


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not PLAYBOOK.exists():
        pytest.skip("ansible not installed: pip install -e '.[fleet]'")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server missing: apt-get install redis-server")
    workdir = tmp_path_factory.mktemp("fleet")
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
        hosts = [Host("host-a", workdir / "host-a", [0, 1], free_port(), free_port()),
                 Host("host-b", workdir / "host-b", [0], free_port(), free_port())]
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

