"""Shared fixtures (a real redis-server per test session, on loopback; the native prover's
circuit cache) and the test tiers.

Tiers (markers): `unit` runs nothing but the test's own process (no Redis, no subprocess,
no circuit build; `make test-fast`, under a minute); `integration` starts processes or
servers (Redis, a devnet process, commands run the way operators run them); `e2e` runs the
whole system; `faults`/`faults_smoke` break it; `fleet` installs test hosts. A test is
`unit` unless it is marked otherwise or uses a fixture that starts something
(HEAVY_FIXTURES)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from roller.ffi import load_prover
from roller.ffi.native import RollerProver
from roller.localrun import RedisServer

PARAMS_ENV = "ROLLER_TEST_PARAMS"
HEAVY_FIXTURES = frozenset({"redis_server", "redis_url", "params_dir", "prover", "fault_lib",
                            "fc"})
NOT_UNIT = ("integration", "e2e", "faults", "faults_smoke", "fleet")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        heavy = HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if heavy and not any(item.get_closest_marker(m) for m in NOT_UNIT):
            item.add_marker(pytest.mark.integration)
        elif not any(item.get_closest_marker(m) for m in NOT_UNIT):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database for one test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield redis_server.url
    client.flushdb()


def pytest_configure(config: pytest.Config) -> None:
    """One prover circuit cache for every test ($ROLLER_TEST_PARAMS, else a session temp dir):
    the circuits (about 1 GB, 15-30 s to build) are built once, not once per test module."""
    if not os.environ.get(PARAMS_ENV):
        os.environ[PARAMS_ENV] = tempfile.mkdtemp(prefix="roller-params-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(PARAMS_ENV), ignore_errors=True))


@pytest.fixture(scope="session")
def params_dir() -> Path:
    path = Path(os.environ[PARAMS_ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def prover(params_dir: Path) -> RollerProver:
    """The real native prover, initialised once for the session's circuit cache."""
    prover = load_prover(None, str(params_dir))
    assert isinstance(prover, RollerProver)
    return prover
