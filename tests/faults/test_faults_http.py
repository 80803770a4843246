"""The fault suite's rows on every HTTP + JWT generation the devnet speaks.

The same faults as test_faults.py, judged the same way in both ledgers; each generation
gets a cluster of its own. In `make test` (faults_smoke) the faults where the protocol
matters: listener SIGKILL + restart (the answer is submitted by the next listener, which
never saw the task) and coordinator restart; in `make faults` also those of the worker side
(pool child SIGKILL mid-proof, a poison task, Redis restart). Our ledger keys every
generation's record by the task id; on H2/H3 a failed task comes back under a new uuid, a
re-assignment of the same record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultlib import FaultCluster, start_cluster
from test_faults import child_kills, coordinator_restarts, listener_kills, poison, redis_restarts

pytestmark = pytest.mark.e2e
smoke = pytest.mark.faults_smoke
full = pytest.mark.faults

GENERATIONS = ("http-h1", "http-h2", "http-h3")


@pytest.fixture(scope="module", params=GENERATIONS)
def hfc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        params_dir: Path, fault_lib: Path) -> Iterator[tuple[str, FaultCluster]]:
    gen = str(request.param)
    cluster = start_cluster(
        tmp_path_factory.mktemp(f"faults-{gen}"), params_dir, fault_lib,
        devnet_args=("--protocol", gen, "--http-port", "0"),
        config_extra={"coordinator": {"protocol": gen, "poll_interval_seconds": 0.5,
                                      "refused_interval_seconds": 1}})
    failed = False
    try:
        yield gen, FaultCluster(cluster).wait_registered()
    except Exception:
        failed = True
        raise
    finally:
        if failed:
            print(cluster.logs()[-30000:])
        cluster.stop()


@full
def test_pool_child_sigkill(hfc: tuple[str, FaultCluster]) -> None:
    gen, fc = hfc
    child_kills(fc, 2, f"1 pool child SIGKILL mid-proof ({gen})")


@full
def test_prover_abort_is_poison(hfc: tuple[str, FaultCluster]) -> None:
    gen, fc = hfc
    poison(fc, ["abort"], f"2 prover abort (poison) ({gen})")


@smoke
def test_listener_sigkill(hfc: tuple[str, FaultCluster]) -> None:
    gen, fc = hfc
    listener_kills(fc, 1, f"4 listener SIGKILL + restart ({gen})")


@smoke
def test_coordinator_restart(hfc: tuple[str, FaultCluster]) -> None:
    gen, fc = hfc
    coordinator_restarts(fc, 1, f"5b coordinator restart ({gen})")


@full
def test_redis_restart(hfc: tuple[str, FaultCluster]) -> None:
    gen, fc = hfc
    redis_restarts(fc, 1, f"6 redis restart ({gen})")
