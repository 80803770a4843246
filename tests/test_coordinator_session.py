"""Which session a slot gets (roller.coordinator_session): the configured generation, or
with `coordinator.protocol: auto` the one detected at the first login, against the devnet's
real servers over loopback (HTTP generations, and the 2023 WebSocket one answering the
challenge probe with 426)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from roller.config import parse_config
from roller.coordinator_session import SessionFactory, task_types, ws_url_of
from roller.devnet.devnet import Devnet
from roller.protocol.http_enums import Generation, TaskType
from roller.protocol.session import HttpCoordinatorSession, WsCoordinatorSession


def config(tmp_path: Path, url: str, l2: str, **coordinator: Any) -> Any:
    return parse_config({
        "roller_name": "r", "keystore_path": "k.json", "keystore_password": "p",
        "coordinator_url": url, "trace_endpoint": l2, "coordinator": coordinator,
        "slots": [{"name": "chunk-gpu0", "queue": "gpu0", "prove_type": 0,
                   "keystore_path": "k0.json"},
                  {"name": "batch-gpu1", "queue": "gpu1", "prove_type": 1,
                   "keystore_path": "k1.json"}],
    }, tmp_path, env={})


def inner(session: Any) -> Any:
    """The session under a detection's probation wrapper (coordinator_session._OnProbation)."""
    return getattr(session, "inner", session)


def test_task_types_per_slot_and_generation() -> None:
    assert task_types(0, Generation.H3) == (TaskType.CHUNK,)
    assert task_types(1, Generation.H2) == (TaskType.BATCH,)
    assert task_types(1, Generation.H3) == (TaskType.BATCH, TaskType.BUNDLE)
    assert ws_url_of("https://c.example:8390/x") == "wss://c.example:8390/x"


@pytest.mark.parametrize("gen", ["http-h1", "http-h2", "http-h3", "http-h4"])
def test_auto_detects_each_http_generation(tmp_path: Path, gen: str) -> None:
    with Devnet(ws_port=0, l2_port=0, control_port=0, http_port=0, verifier="stand-in",
                protocol=gen, chunk_size=2) as net:
        factory = SessionFactory(config(tmp_path, net.coordinator_url, net.l2_url))
        slot = factory.cfg.slots[1]
        session = inner(factory.new(slot, Account.create()))
        assert isinstance(session, HttpCoordinatorSession)
        assert session.generation == gen
        assert session.task_types == task_types(1, Generation(gen))
        # Detected once for the process: the next slot's session does not probe again.
        used = len(net.http.state.used_challenges) if net.http else 0
        other = factory.new(factory.cfg.slots[0], Account.create())
        assert other.generation == gen and net.http is not None
        assert len(net.http.state.used_challenges) == used
        assert factory.l2_head.height() > 0  # the devnet's L2 node answers eth_blockNumber


def test_auto_finds_the_websocket_era_behind_an_http_url(tmp_path: Path) -> None:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                chunk_size=2) as net:
        url = net.ws_url.replace("ws://", "http://")
        factory = SessionFactory(config(tmp_path, url, net.l2_url))
        session = factory.new(factory.cfg.slots[0], Account.create())
        assert isinstance(inner(session), WsCoordinatorSession)
        assert session.generation == "ws-2023-06"
        session.open(lambda task: None, lambda: True)  # registers at the ws:// address
        try:
            assert session.connected
        finally:
            session.close()


def test_configured_generation_is_used_as_given(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9",
                 protocol="http-h2", hard_fork_name="bernoulli", prover_version="v4.4.0-x")
    session = SessionFactory(cfg).new(cfg.slots[0], Account.create())
    assert isinstance(session, HttpCoordinatorSession)
    assert session.generation == "http-h2" and session.client.hard_fork_name == "bernoulli"
    assert session.client.prover_version == "v4.4.0-x"
