"""The fleet on systemd, for real: site.yml installs two test hosts that boot systemd
(systemd-nspawn containers, see nspawn.py) with roller_process_manager: systemd, the devnet
proves through them, upgrade.yml runs during a held proof, and the units' promises are
checked on the real units: warm stop, restart after SIGKILL, a host powered off hard
mid-proof, a worker that cannot start, journald, a reboot of a host. Every host runs the
production defaults (kombu's visibility timeout a day, a reconcile sweep every 30 s).

Slow (a few minutes; the root image is built once per machine, ~1-2 min): `make fleet` or
`pytest -m fleet`. Skipped, with the reason, where systemd-nspawn cannot run (not root, no
systemd-container or debootstrap).
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from roller.broker import UNACKED_KEY
from roller.config import RECONCILE_INTERVAL_SECONDS
from roller.lifecycle import LEASE_SECONDS, LIVENESS_GRACE_SECONDS
from roller.localrun import wait_for

from .fleetlib import BROKER_PASSWORD, KEYSTORE_PASSWORD, OLD_VERSION, Fleet, SystemdHost
from .test_fleet_rollout import (
    accepted,
    check_site_installs_hosts_that_prove,
    check_upgrade_during_a_long_proof,
    proving_host,
    sessions,
)

pytestmark = [pytest.mark.fleet, pytest.mark.fleet_systemd]


def hosts(fleet: Fleet) -> list[SystemdHost]:
    out = [h for h in fleet.hosts if isinstance(h, SystemdHost)]
    assert len(out) == len(fleet.hosts)
    return out


def timed(fleet: Fleet, name: str, started: float) -> None:
    fleet.timings[name] = time.monotonic() - started


def only_on(fleet: Fleet, host: SystemdHost) -> list[SystemdHost]:
    """Stop the listeners of the other hosts, so the coordinator dispatches to `host` only;
    returns them (start_listeners puts them back)."""
    others = [h for h in hosts(fleet) if h is not host]
    for other in others:
        other.systemctl("stop", "roller-listener.service")
    return others


def start_listeners(others: list[SystemdHost]) -> None:
    for other in others:
        other.systemctl("start", "roller-listener.service")
        wait_for(lambda o=other: all(s["state"] == "registered"
                                     for s in sessions(o).values()),  # type: ignore[misc]
                 60, f"the sessions of {other.name} to register")


# From a worker's death to its task sent again, with the defaults (35 s: reconcile every 5 s); the
# proof and a restart come on top (README "Guarantees").
REDRIVE_BOUND_S = LEASE_SECONDS + LIVENESS_GRACE_SECONDS + 2 * RECONCILE_INTERVAL_SECONDS


def worker_slot(host: SystemdHost, task_id: str) -> tuple[str, int]:
    slot = next(s for s in host.slots() if host.ledger().get(s, task_id) is not None)
    return slot, int(slot.rsplit("gpu", 1)[1])


def test_site_installs_hosts_that_prove(systemd_fleet: Fleet) -> None:
    fleet = systemd_fleet
    for host in hosts(fleet):
        units = [f"{host.unit(p)}.service" for p in host.programs()] + ["roller-redis.service"]
        for unit in units:
            assert host.systemctl("is-active", unit) == "active", (host.name, unit)
            assert host.systemctl("is-enabled", unit) == "enabled", (host.name, unit)
        # The processes run as the roller user, on production paths, under systemd.
        show = host.systemctl("show", "-p", "User", "-p", "KillMode", "-p", "TimeoutStopUSec",
                              "-p", "OOMPolicy", "roller-worker@0.service")
        assert "User=roller" in show and "KillMode=mixed" in show and "OOMPolicy=continue" in show
        pid = host.pids()["roller-worker-0"]
        assert host.exec("stat", "-c", "%U", f"/proc/{pid}").stdout.strip() == "roller"
        assert host.systemctl("is-active", "redis-server.service") != "active"
    check_site_installs_hosts_that_prove(fleet)
    for host in hosts(fleet):
        assert host.installed_version() == OLD_VERSION


def test_journald_carries_the_key_value_lines(systemd_fleet: Fleet) -> None:
    for host in hosts(systemd_fleet):
        workers = "".join(host.log(f"roller-worker-{g}") for g in host.gpus)
        assert re.search(r"job received task_id=\S+ slot=" + re.escape(host.name), workers)
        assert re.search(r"proof stored in outbox task_id=\S+", workers)
        listener = host.log("roller-listener")
        assert re.search(r"slot=" + re.escape(host.slots()[0]), listener), listener[-2000:]
        journal = host.exec("journalctl", "-q", "--no-pager", "-o", "cat", timeout=60).stdout
        assert KEYSTORE_PASSWORD not in journal and BROKER_PASSWORD not in journal


def test_warm_stop_waits_for_the_proof_and_acks_the_job(systemd_fleet: Fleet) -> None:
    """`systemctl stop` of a worker whose job is held: the unit stays deactivating, the
    proof finishes, the job is acknowledged (not redelivered when the worker starts again)."""
    fleet = systemd_fleet
    host = hosts(fleet)[0]
    others = only_on(fleet, host)
    started = time.monotonic()
    fleet.devnet.control("l2_fault", {"mode": "hang"})
    stop: subprocess.Popen[str] | None = None
    try:
        task_id = fleet.push(2674, 2)
        wait_for(lambda: proving_host(fleet, task_id) is host, 120, "the proof to start")
        slot, gpu = worker_slot(host, task_id)
        unit = f"roller-worker@{gpu}.service"
        main_pid = host.pids()[f"roller-worker-{gpu}"]
        stop = host.box.popen("systemctl", "stop", unit)
        wait_for(lambda: host.systemctl("is-active", unit) == "deactivating", 30,
                 f"{unit} to be stopping")
        # Held: the warm stop waits (TimeoutStopSec is far above this), the worker lives.
        assert stop.poll() is None and host.pids()[f"roller-worker-{gpu}"] == main_pid
        fleet.devnet.control("l2_fault", {"mode": "none"})
        assert stop.wait(timeout=240) == 0, stop.stdout.read() if stop.stdout else ""
    finally:
        fleet.devnet.control("l2_fault", {"mode": "none"})
        if stop is not None and stop.poll() is None:
            stop.kill()
    assert host.systemctl("is-active", unit) == "inactive"
    assert host.ledger().r.hlen(UNACKED_KEY) == 0, "the job was not acknowledged"
    host.systemctl("start", unit)
    wait_for(lambda: fleet.task(task_id)["state"] == "verified", 120, "the proof's verification")
    log = host.log(f"roller-worker-{gpu}")
    assert log.count(f"job received task_id={task_id}") == 1, "job redelivered"
    # SIGTERM came first, the proof was stored after it, and only then did the unit stop.
    stored = log.index(f"proof stored in outbox task_id={task_id}")
    assert "Warm shutdown" in log[:stored]
    assert f"Stopped roller-worker@{gpu}.service" in log[stored:], log[-3000:]
    task = fleet.task(task_id)
    assert task["dispatch_count"] == 1 and len(accepted(task)) == 1
    rec = host.ledger().get(slot, task_id)
    assert rec is not None and rec.attempts == 1
    start_listeners(others)
    timed(fleet, "warm_stop_s", started)


def test_worker_sigkill_is_restarted_and_the_task_redriven(systemd_fleet: Fleet) -> None:
    """kill -9 of a worker's main process mid-proof: systemd restarts it (Restart=on-failure);
    the job's message stays unacknowledged in kombu (production visibility timeout: a day),
    the listener re-drives the task from its lease, and it is answered once."""
    fleet = systemd_fleet
    host = hosts(fleet)[1]
    others = only_on(fleet, host)
    started = time.monotonic()
    task_id = fleet.push(2676, 2)
    wait_for(lambda: proving_host(fleet, task_id) is host, 120, "the proof to start")
    slot, gpu = worker_slot(host, task_id)
    unit = f"roller-worker@{gpu}.service"
    before = host.pids()[f"roller-worker-{gpu}"]
    restarts = int(host.systemctl("show", "-p", "NRestarts", "--value", unit))
    killed_at = time.monotonic()
    host.systemctl("kill", "--kill-whom=main", "--signal=SIGKILL", unit)
    wait_for(lambda: host.pids()[f"roller-worker-{gpu}"] not in (0, before)
             and host.systemctl("is-active", unit) == "active", 60, f"systemd to restart {unit}")
    assert int(host.systemctl("show", "-p", "NRestarts", "--value", unit)) == restarts + 1
    wait_for(lambda: fleet.task(task_id)["state"] == "verified", REDRIVE_BOUND_S + 120,
             "the re-driven job's proof to be verified", interval=1.0)
    timed(fleet, "sigkill_to_verified_s", killed_at)
    timed(fleet, "sigkill_recovery_s", started)
    task = fleet.task(task_id)
    assert task["dispatch_count"] == 1 and len(accepted(task)) == 1, task["submissions"]
    log = host.log(f"roller-worker-{gpu}")
    assert log.count(f"job received task_id={task_id}") == 2, "task not re-driven"
    assert "status=9/KILL" in log or "signal=KILL" in log, log[-3000:]
    assert "dead task re-driven task_id=" + task_id in host.log("roller-listener")
    # kombu still holds the dead worker's message: production settings, nothing shortened.
    assert host.ledger().r.hlen(UNACKED_KEY) >= 1
    start_listeners(others)


def test_host_powered_off_hard_mid_proof(systemd_fleet: Fleet) -> None:
    """The host's plug pulled mid-proof (every process SIGKILLed at once, Redis included,
    which keeps its AOF) and the host booted again: the task is answered once, re-driven
    from its lease after the boot."""
    fleet = systemd_fleet
    host = hosts(fleet)[1]
    others = only_on(fleet, host)
    task_id = fleet.push(2677, 2)
    wait_for(lambda: proving_host(fleet, task_id) is host, 120, "the proof to start")
    slot, gpu = worker_slot(host, task_id)
    killed_at = time.monotonic()
    host.box.stop(hard=True)
    host.box.start()
    for program in host.programs():
        wait_for(lambda p=program: host.active(p) == "active", 60,  # type: ignore[misc]
                 f"{program} on {host.name} after the power cut")
    timed(fleet, "power_cut_to_running_s", killed_at)
    wait_for(lambda: fleet.task(task_id)["state"] == "verified", REDRIVE_BOUND_S + 120,
             "the task's proof to be verified after the power cut", interval=1.0)
    timed(fleet, "power_cut_to_verified_s", killed_at)
    task = fleet.task(task_id)
    assert task["dispatch_count"] == 1 and len(accepted(task)) == 1, task["submissions"]
    rec = host.ledger().get(slot, task_id)
    assert rec is not None and rec.state == "delivered" and rec.total_attempts == 2
    start_listeners(others)


def test_upgrade_during_a_long_proof(systemd_fleet: Fleet) -> None:
    fleet = systemd_fleet
    host_a, _ = hosts(fleet)
    only_on(fleet, host_a)  # upgrade.yml restarts host-b's listener itself
    check_upgrade_during_a_long_proof(fleet)


def test_reboot_brings_every_unit_back(systemd_fleet: Fleet) -> None:
    fleet = systemd_fleet
    host = hosts(fleet)[1]
    before = sessions(host)
    started = time.monotonic()
    host.box.restart()
    timed(fleet, "reboot_s", started)
    for program in host.programs():
        wait_for(lambda p=program: host.active(p) == "active", 60,  # type: ignore[misc]
                 f"{program} on {host.name} after the reboot")
    wait_for(lambda: all(s["state"] == "registered"
                         and int(s["registrations"]) > int(before[slot]["registrations"])
                         for slot, s in sessions(host).items()), 90,
             f"the sessions of {host.name} to register again")
    timed(fleet, "reboot_to_registered_s", started)
    task_id = fleet.push(2678, 1)
    wait_for(lambda: fleet.task(task_id)["state"] == "verified", 240, "a proof after the reboot")


def test_worker_that_cannot_start_stops_the_rollout(systemd_fleet: Fleet) -> None:
    """A new prover library that does not load: the worker exits before it consumes
    anything, systemd gives up on it (`failed`), the health check fails and the rollout
    stops before host-b. Last: it leaves host-a broken."""
    fleet = systemd_fleet
    first, second = hosts(fleet)
    before = second.pids()
    broken = fleet.workdir / "broken" / "libroller_prover.so"
    broken.parent.mkdir()
    broken.write_bytes(b"not a shared library\n")
    log = fleet.workdir / "upgrade-broken.log"
    started = time.monotonic()
    run = fleet.playbook("upgrade.yml", "-e", f"roller_wheel={fleet.new_wheel}",
                         "-e", f"roller_native_library={broken}",
                         # Enough for three failed starts (RestartSec=5), not the default 120.
                         "-e", "roller_health_timeout=30", log=log)
    rc = run.wait(timeout=600)
    timed(fleet, "failed_start_upgrade_s", started)
    out = log.read_text()
    assert rc != 0, out
    assert "Check worker and session health" in out and "the rollout stops here" in out
    plays = out[:out.index("PLAY RECAP")]
    assert f"[{second.name}]" not in plays, "the rollout went on to the next host"
    assert second.pids() == before
    for gpu in first.gpus:
        unit = f"roller-worker@{gpu}.service"
        wait_for(lambda u=unit: first.systemctl("is-failed", u) == "failed",  # type: ignore[misc]
                 120, f"{unit} to be failed")
        journal = first.log(f"roller-worker-{gpu}")
        assert "prover unusable" in journal, journal[-3000:]
        assert "Connected to redis" not in journal.split("prover unusable")[-1]
    # Nothing consumes host-a's queues.
    ping = first.exec("/opt/roller/bin/roller-celery", "inspect", "ping", "-t", "5")
    assert "pong" not in ping.stdout


def test_only_the_listener_can_read_keys(systemd_fleet: Fleet) -> None:
    """Privilege separation (issue 25): as the workers' user the keystores and listener.env
    are refused; the workers' and Flower's environments lack the keystore password; Flower
    answers 401 without credentials; the listener still signs (the earlier tests' tasks were
    verified through it)."""
    for host in hosts(systemd_fleet):
        for path in ["/var/lib/roller/keystore/keystore-gpu0.json", "/etc/roller/listener.env"]:
            run = host.exec("setpriv", "--reuid=roller", "--regid=roller", "--init-groups",
                            "cat", path)
            assert run.returncode != 0 and "Permission denied" in run.stderr, (host.name, path)
        pids = host.pids()
        for program in [f"roller-worker-{g}" for g in host.gpus] + ["roller-flower"]:
            environ = host.exec("cat", f"/proc/{pids[program]}/environ").stdout
            assert "ROLLER_KEYSTORE_PASSWORD" not in environ, (host.name, program)
            assert KEYSTORE_PASSWORD not in environ, (host.name, program)
        listener = host.exec("cat", f"/proc/{pids['roller-listener']}/environ").stdout
        assert KEYSTORE_PASSWORD in listener
        assert host.exec("stat", "-c", "%U", f"/proc/{pids['roller-listener']}").stdout.strip() \
            == "roller-listener"
        status = host.exec("python3", "-c", (
            "import urllib.request, urllib.error\n"
            "try:\n"
            f"    urllib.request.urlopen('http://127.0.0.1:{host.flower_port}/api/workers')\n"
            "    print(200)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n")).stdout.strip()
        assert status == "401", (host.name, status)


def test_units_exposure(systemd_fleet: Fleet) -> None:
    """`systemd-analyze security` of every unit: at or below 4.0 ("OK"), the workers too
    (they keep the GPU devices, the one setting they lack)."""
    scores = {}
    for host in hosts(systemd_fleet)[:1]:
        for unit in ["roller-listener.service", "roller-flower.service", "roller-redis.service",
                     "roller-worker@0.service"]:
            out = host.exec("systemd-analyze", "security", "--no-pager", unit).stdout
            match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
            assert match, out[-500:]
            scores[unit] = float(match.group(1))
    print("systemd-analyze security exposure:", scores)
    systemd_fleet.timings.update({f"exposure {u}": s for u, s in scores.items()})
    for unit, score in scores.items():
        assert score <= 4.0, (unit, score)
