"""site.yml installs two test hosts for real and the devnet proves through them; upgrade.yml
rolls a new version out while a proof runs, without killing or repeating it.

Slow (a few minutes): `make fleet` or `pytest -m fleet`. Hosts are root prefixes on this
machine driven over Ansible's local connection with supervisord (see conftest.py). The
check_* functions are shared with the systemd hosts (test_fleet_systemd.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import time
from typing import Any

import pytest

from roller.localrun import wait_for

from .fleetlib import (
    BROKER_PASSWORD,
    KEYSTORE_PASSWORD,
    NEW_VERSION,
    OLD_VERSION,
    Fleet,
    Host,
)

pytestmark = pytest.mark.fleet


def accepted(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in task["submissions"] if not s.get("rejection") and s["status"] == 0]


def sessions(host: Host) -> dict[str, dict[str, str]]:
    ledger = host.ledger()
    return {slot: ledger.session(slot) for slot in host.slots()}


def digests(host: Host) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in host.keystores()}


def check_site_installs_hosts_that_prove(fleet: Fleet) -> None:
    site_log = (fleet.workdir / "site.log").read_text()
    assert KEYSTORE_PASSWORD not in site_log and BROKER_PASSWORD not in site_log
    for host in fleet.hosts:
        assert host.installed_version() == OLD_VERSION
        keystores = host.keystores()
        assert [p.name for p in keystores] == [f"keystore-gpu{g}.json" for g in host.gpus]
        for path in [*keystores, host.prefix / "etc/roller/roller.env",
                     host.prefix / "etc/roller/listener.env"]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        config = json.loads((host.prefix / "etc/roller/config.json").read_text())
        assert config["gpus"] == host.gpus and "keystore_password" not in config
        redis_conf = (host.prefix / "etc/roller/redis.conf").read_text()
        assert "appendonly yes" in redis_conf and "bind 127.0.0.1" in redis_conf
        assert all(s["state"] == "registered" for s in sessions(host).values())
        units = host.prefix / "etc/systemd/system"
        assert {p.name for p in units.iterdir()} >= {
            "roller-worker@.service", "roller-listener.service", "roller-flower.service"}

    started = time.monotonic()
    ids = [fleet.push(first, 2) for first in (2660, 2662, 2664)]
    try:
        wait_for(lambda: all(fleet.task(i)["state"] == "verified" for i in ids), 300,
                 "the devnet tasks to be verified", interval=1.0)
    except Exception:
        print(fleet.logs())
        raise
    fleet.timings["prove_3_tasks_s"] = time.monotonic() - started
    provers = set()
    for task_id in ids:
        task = fleet.task(task_id)
        assert task["dispatch_count"] == 1 and len(accepted(task)) == 1
        provers.add(accepted(task)[0]["name"])
    # One task per idle identity: every slot of both hosts proved one.
    assert provers == {slot for host in fleet.hosts for slot in host.slots()}


def proving_host(fleet: Fleet, task_id: str) -> Host | None:
    for host in fleet.hosts:
        for slot in host.slots():
            rec = host.ledger().get(slot, task_id)
            if rec is not None and rec.state == "proving":
                return host
    return None


def check_upgrade_during_a_long_proof(fleet: Fleet) -> None:
    """The L2 node holds the job's trace fetch, so the job runs until the upgrade's drain
    has been seen waiting for it; the host's restart must come only after the proof."""
    before_pids = {h.name: h.pids() for h in fleet.hosts}
    before_sessions = {h.name: sessions(h) for h in fleet.hosts}
    before_keys = {h.name: digests(h) for h in fleet.hosts}
    fleet.devnet.control("l2_fault", {"mode": "hang"})
    task_id = fleet.push(2670, 4)
    wait_for(lambda: proving_host(fleet, task_id) is not None, 120, "the proof to start")
    host = proving_host(fleet, task_id)
    assert host is not None
    slot = next(s for s in host.slots() if host.ledger().get(s, task_id) is not None)

    started = time.monotonic()
    log = fleet.workdir / "upgrade.log"
    upgrade = fleet.playbook("upgrade.yml", "-e", f"roller_wheel={fleet.new_wheel}", log=log)
    draining = re.compile(rf"RETRYING: \[{host.name}\]: Wait until no job runs")
    try:
        wait_for(lambda: bool(draining.search(log.read_text())) or upgrade.poll() is not None,
                 400, f"the drain of {host.name} to wait for the running job", interval=1.0)
        assert upgrade.poll() is None, log.read_text()
        held = time.monotonic() - started
        # The host is drained but its job still runs: the worker is still the old process.
        assert host.pids() == before_pids[host.name]
        fleet.devnet.control("l2_fault", {"mode": "none"})
        rc = upgrade.wait(timeout=600)
    except Exception:
        fleet.devnet.control("l2_fault", {"mode": "none"})
        print(fleet.logs())
        raise
    fleet.timings["upgrade_s"] = time.monotonic() - started
    fleet.timings["job_held_s"] = held
    assert rc == 0, fleet.logs()

    wait_for(lambda: fleet.task(task_id)["state"] == "verified", 120, "the proof's verification")
    task = fleet.task(task_id)
    assert task["dispatch_count"] == 1, "the coordinator re-dispatched the task"
    assert len(accepted(task)) == 1 and len(task["submissions"]) == 1, task["submissions"]
    rec = host.ledger().get(slot, task_id)
    assert rec is not None and rec.attempts == 1 and rec.outcome == "accepted"
    worker_logs = "".join(host.log(f"roller-worker-{g}") for g in host.gpus)
    assert worker_logs.count(f"job received task_id={task_id}") == 1, "job redelivered"
    # The proof was stored before the worker that proved it was stopped (the listener
    # delivers it).
    stored = worker_logs.index(f"proof stored in outbox task_id={task_id}")
    assert worker_logs.index("Warm shutdown", stored) > stored

    upgrade_log = log.read_text()
    assert KEYSTORE_PASSWORD not in upgrade_log and BROKER_PASSWORD not in upgrade_log
    for h in fleet.hosts:
        assert h.installed_version() == NEW_VERSION
        after = h.pids()
        for program, pid in after.items():
            assert pid and pid != before_pids[h.name][program], f"{h.name} {program} not restarted"
        for slot_name, session in sessions(h).items():
            assert session["state"] == "registered"
            assert (int(session["registrations"])
                    > int(before_sessions[h.name][slot_name]["registrations"]))
        assert digests(h) == before_keys[h.name], "a keystore changed"
    # One host at a time: everything for host-a, health check included, before host-b.
    plays = upgrade_log[:upgrade_log.index("PLAY RECAP")]
    assert plays.rindex("[host-a]") < plays.index("[host-b]")


def check_failed_host_stops_the_rollout(fleet: Fleet) -> None:
    """The first host's install fails: it goes back to consuming, the next host is untouched."""
    first, second = fleet.hosts
    before = {h.name: h.pids() for h in fleet.hosts}
    log = fleet.workdir / "upgrade-failing.log"
    started = time.monotonic()
    run = fleet.playbook("upgrade.yml", "-e", f"roller_wheel={fleet.workdir}/missing.whl", log=log)
    rc = run.wait(timeout=600)
    fleet.timings["failed_upgrade_s"] = time.monotonic() - started
    out = log.read_text()
    assert rc != 0, out
    assert "the rollout stops here" in out
    plays = out[:out.index("PLAY RECAP")]
    assert f"[{second.name}]" not in plays, "the rollout went on to the next host"
    assert second.pids() == before[second.name]
    after = first.pids()
    for gpu in first.gpus:
        program = f"roller-worker-{gpu}"
        assert after[program] != before[first.name][program], "worker not restarted"
    # The restarted workers consume their queues again.
    workers = ",".join(f"gpu{g}@{first.name}" for g in first.gpus)
    queues = json.loads(first.celery("inspect", "active_queues", "-j", "-t", "10", "-d", workers))
    assert {w: [q["name"] for q in qs] for w, qs in queues.items()} == {
        f"gpu{g}@{first.name}": [f"gpu{g}"] for g in first.gpus}


def test_site_installs_hosts_that_prove(fleet: Fleet) -> None:
    check_site_installs_hosts_that_prove(fleet)


def test_upgrade_during_a_long_proof(fleet: Fleet) -> None:
    check_upgrade_during_a_long_proof(fleet)


def test_failed_host_stops_the_rollout(fleet: Fleet) -> None:
    check_failed_host_stops_the_rollout(fleet)
