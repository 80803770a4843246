"""Auto detection that recovers, and token refusals that lead to one new login (issue 22,
items 3 and 4), through an injected HTTP transport in front of the devnet's real HTTP
coordinator on loopback: the transport answers chosen requests itself (a proxy's 429, a
WAF's 403, a 500, a WebSocket server's 426) and passes the rest through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from test_coordinator_session import config, inner

from roller.coordinator_session import SessionFactory
from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import TaskBook, TaskRecord
from roller.devnet.verifier import StandInVerifier
from roller.errors import ConnectionLost
from roller.protocol import http_client
from roller.protocol import http_errors as he
from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_enums import Generation
from roller.protocol.session import HttpCoordinatorSession, WsCoordinatorSession

VERSION = "v4.4.45-000000-000000-000000"
CHUNK = "0x" + "11" * 32
BLOCK = "0x" + "22" * 32


class Scripted(requests.Session):
    """A requests.Session whose next answers to an endpoint can be scripted: ``plan[path]``
    is a list of HTTP statuses served (empty body) before requests go through for real."""

    def __init__(self, plan: dict[str, list[int]], log: list[str]) -> None:
        super().__init__()
        self.plan = plan
        self.log = log

    def request(self, method: str | bytes, url: str | bytes, *args: Any,  # type: ignore[override]
                **kwargs: Any) -> requests.Response:
        path = str(url).rsplit("/", 1)[-1]
        self.log.append(path)
        statuses = self.plan.get(path)
        if statuses:
            resp = requests.Response()
            resp.status_code = statuses.pop(0)
            resp._content = b""
            return resp
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def coordinator() -> Iterator[HttpCoordinator]:
    book = TaskBook()
    book.add(TaskRecord(id=CHUNK, type=0, block_hashes=(BLOCK,), source="chunk", chain=0,
                        block_numbers=(2,)))
    coord = HttpCoordinator(book, StandInVerifier(), HttpCoordinatorConfig(Generation.H3))
    coord.start()
    yield coord
    coord.stop()


def url_of(coord: HttpCoordinator) -> str:
    assert coord._server is not None
    return f"http://127.0.0.1:{coord._server.server_address[1]}"


@pytest.mark.parametrize("status", [429, 403, 500, 503])
def test_auto_detection_retries_an_outage_then_detects(
        tmp_path: Path, coordinator: HttpCoordinator, status: int) -> None:
    plan = {"challenge": [status]}
    calls: list[str] = []
    cfg = config(tmp_path, url_of(coordinator), "http://127.0.0.1:9", vks=["mock_vk"],
                 prover_version=VERSION)
    factory = SessionFactory(cfg, http_session=lambda: Scripted(plan, calls))
    slot = cfg.slots[0]
    with pytest.raises(ConnectionLost, match=f"HTTP {status}"):
        factory.new(slot, Account.create())  # the listener backs off and reconnects
    session = inner(factory.new(slot, Account.create()))
    assert isinstance(session, HttpCoordinatorSession) and session.generation == "http-h3"


def test_a_detection_that_fails_to_connect_is_forgotten(
        tmp_path: Path, coordinator: HttpCoordinator) -> None:
    """A 426 names the WS era; the WS session then cannot connect (an HTTP coordinator is
    there): the detection is forgotten and the next connection detects H3."""
    plan = {"challenge": [426]}
    calls: list[str] = []
    cfg = config(tmp_path, url_of(coordinator), "http://127.0.0.1:9", vks=["mock_vk"],
                 prover_version=VERSION)
    factory = SessionFactory(cfg, http_session=lambda: Scripted(plan, calls))
    slot = cfg.slots[0]
    ws = factory.new(slot, Account.create())
    assert isinstance(inner(ws), WsCoordinatorSession)
    with pytest.raises(ConnectionLost):
        ws.open(lambda task: None, lambda: True)
    http = factory.new(slot, Account.create())
    assert isinstance(inner(http), HttpCoordinatorSession)
    http.open(lambda task: None, lambda: False)  # connects: the detection is confirmed
    try:
        assert http.connected
        again = factory.new(cfg.slots[1], Account.create())
        assert isinstance(again, HttpCoordinatorSession)  # no probation any more
    finally:
        http.close()


def test_detection_of_a_websocket_answer_and_of_a_non_envelope(
        coordinator: HttpCoordinator) -> None:
    url = url_of(coordinator)
    for status in (404, 426):
        found = http_client.detect_generation(
            url, Account.create(), prover_name="n", prover_version=VERSION,
            session=Scripted({"challenge": [status]}, []))
        assert found.generation is None
    # A 200 that is no challenge envelope (a captive portal, a proxy page) concludes nothing.
    with pytest.raises(ConnectionLost):
        http_client.detect_generation(url, Account.create(), prover_name="n",
                                      prover_version=VERSION,
                                      session=_Page(b"<html>portal</html>"))


class _Page(requests.Session):
    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        resp = requests.Response()
        resp.status_code, resp._content = 200, self.body
        return resp


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_jwt_secret_leads_to_one_new_login(coordinator: HttpCoordinator) -> None:
    """50000 `signature is invalid` (the coordinator rotated its secret) on get_task: one new
    login, the call retried and answered; a coordinator that keeps refusing fresh tokens
    gets at most one login per call and none within the backoff."""
    calls: list[str] = []
    clock = Clock()
    client = HttpCoordinatorClient(url_of(coordinator), Generation.H3, Account.create(),
                                   prover_name="n", prover_version=VERSION,
                                   prover_types=(1,), vks=("mock_vk",),
                                   session=Scripted({}, calls), clock=clock)
    client.login()
    coordinator.clear_auth()  # every token it issued is now `signature is invalid`
    task = client.get_task((1,), 10**6)
    assert task is not None and task.task_id == CHUNK
    assert calls == ["challenge", "login", "get_task", "challenge", "login", "get_task"]

    # Every token refused (a secret that rotates on every login): one login per call, then
    # the backoff holds further logins back while the refusal is raised.
    calls.clear()
    original = coordinator._jwt

    def refuse(token: str | None) -> Any:
        raise http_client_refusal()

    coordinator._jwt = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(he.TokenInvalid):
            client.get_task((1,), 10**6)
        assert calls.count("login") == 1
        with pytest.raises(he.TokenInvalid):
            client.get_task((1,), 10**6)
        assert calls.count("login") == 1  # within the backoff: no new login
        clock.now += http_client.RELOGIN_BACKOFF_SECONDS + 0.1
        with pytest.raises(he.TokenInvalid):
            client.get_task((1,), 10**6)
        assert calls.count("login") == 2
        clock.now += http_client.RELOGIN_BACKOFF_SECONDS + 0.1  # the backoff has doubled
        with pytest.raises(he.TokenInvalid):
            client.get_task((1,), 10**6)
        assert calls.count("login") == 2
        clock.now += 2 * http_client.RELOGIN_BACKOFF_SECONDS
        with pytest.raises(he.TokenInvalid):
            client.get_task((1,), 10**6)
        assert calls.count("login") == 3
    finally:
        coordinator._jwt = original  # type: ignore[method-assign]
    # The coordinator takes tokens again: one login after the backoff, then calls go on.
    clock.now += 8 * http_client.RELOGIN_BACKOFF_SECONDS
    with pytest.raises(he.TaskAlreadyAssigned):  # past the JWT: this key holds the chunk
        client.get_task((1,), 10**6)



def http_client_refusal() -> Exception:
    from roller.devnet.gin_server import Refusal
    from roller.protocol.http_errors import ErrCode

    return Refusal(ErrCode.JWT_COMMON, "signature is invalid")
