"""`roller config check --connect` logs in with each slot's key (issue 22, item 8): against
the devnet's HTTP coordinators on loopback, a right config passes, and a wrong generation, a
wrong `prover_version` and wrong `vks` (h3) fail with the coordinator's own message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_coordinator_session import config

from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import TaskBook
from roller.devnet.verifier import StandInVerifier
from roller.keys import load_or_create_keystore
from roller.operator.config_check import findings
from roller.protocol.http_enums import Generation

VERSION = "v4.4.45-000000-000000-000000"


@pytest.fixture
def coordinators() -> Iterator[dict[str, HttpCoordinator]]:
    out = {}
    for gen in (Generation.H1, Generation.H3):
        c = HttpCoordinator(TaskBook(), StandInVerifier(),
                            HttpCoordinatorConfig(gen, min_prover_version="v4.4.45"))
        c.start()
        out[gen.value] = c
    yield out
    for c in out.values():
        c.stop()


def url_of(coord: HttpCoordinator) -> str:
    assert coord._server is not None
    return f"http://127.0.0.1:{coord._server.server_address[1]}"


def logins(tmp_path: Path, url: str, **coordinator: Any) -> list[tuple[bool, str]]:
    cfg = config(tmp_path, url, "http://127.0.0.1:9", **coordinator)
    for slot in cfg.slots:
        load_or_create_keystore(slot.keystore_path, cfg.keystore_password)
    return [(f.ok, f.detail) for f in findings(cfg, connect=True) if f.what.endswith("login")]


def test_config_check_connect_logs_in_per_slot(
        tmp_path: Path, coordinators: dict[str, HttpCoordinator]) -> None:
    h3 = url_of(coordinators["http-h3"])
    good = logins(tmp_path, h3, protocol="http-h3", prover_version=VERSION, vks=["mock_vk"])
    assert len(good) == 2 and all(ok for ok, _ in good), good
    assert all("http-h3 login accepted" in detail for _, detail in good)
    auto = logins(tmp_path, h3, protocol="auto", prover_version=VERSION, vks=["mock_vk"])
    assert all(ok and "http-h3" in detail for ok, detail in auto), auto

    version = logins(tmp_path, h3, protocol="http-h3", prover_version="v4.4.44-x",
                     vks=["mock_vk"])
    assert not any(ok for ok, _ in version)
    assert all("coordinator refused the login: check the login parameter failure" in d
               or "prover hard name failure" in d for _, d in version), version

    vks = logins(tmp_path, h3, protocol="http-h3", prover_version=VERSION, vks=["real_vk"])
    assert not any(ok for ok, _ in vks)
    assert all("incompatible vk" in d for _, d in vks), vks

    # An H3 config against an H1 coordinator: the H1 coordinator recovers another key from
    # the H3 signature, so the login is a foreign identity: refused as a wrong generation.
    h1 = url_of(coordinators["http-h1"])
    wrong = logins(tmp_path, h1, protocol="http-h3", prover_version=VERSION,
                   vks=["mock_vk"])
    assert not any(ok for ok, _ in wrong)
    assert all("wrong generation" in d for _, d in wrong), wrong
