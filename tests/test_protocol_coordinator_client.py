"""CoordinatorClient against a scripted in-test WebSocket JSON-RPC server (spec 1, 2, 6.3).

The server mimics go-ethereum framing: compact JSON text frames ending in a newline,
answers matched by id, notifications right behind the subscribe answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from roller.errors import ConnectionLost, CoordinatorError
from roller.localrun import wait_for
from roller.protocol import AuthMsg, ProofDetail, ProofMsg, TaskMsg
from roller.protocol.coordinator_client import PONG_DELAY_SECONDS, CoordinatorClient, redact_url

ACCOUNT = Account.from_key("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
H1 = "0x" + "aa" * 32
SUB = "0x27939931d8d3f9ba86f2ad16a7ee762f"


class Peer:
    """Server side of one connection, driven by a test script."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg: dict[str, Any] = json.loads(self.ws.recv(timeout))
        return msg

    def send(self, obj: Any) -> None:
        self.ws.send(json.dumps(obj, separators=(",", ":")) + "\n")

    def answer(self, req: dict[str, Any], result: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": req["id"], "result": result})

    def error(self, req: dict[str, Any], message: str, code: int = -32000) -> None:
        self.send({"jsonrpc": "2.0", "id": req["id"],
                   "error": {"code": code, "message": message}})

    def notify(self, sub: str, result: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": "roller_subscription",
                   "params": {"subscription": sub, "result": result}})

    def hold(self) -> None:
        """Keep the connection open until the client goes away."""
        try:
            while True:
                self.ws.recv()
        except Exception:
            pass


class FakeCoordinator:
    def __init__(self) -> None:
        self.script: Callable[[Peer], None] = Peer.hold
        self.errors: list[BaseException] = []
        self.origins: list[str | None] = []
        self.clients: list[CoordinatorClient] = []
        self.server = serve(self._handle, "127.0.0.1", 0, compression=None,
                            ping_interval=None)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.origins.append(ws.request.headers.get("Origin"))
        try:
            self.script(Peer(ws))
        except ConnectionClosed:
            pass  # the client went away first: normal end of a script
        except Exception as exc:  # surfaced by the fixture teardown
            self.errors.append(exc)


@pytest.fixture
def coord() -> Iterator[FakeCoordinator]:
    fake = FakeCoordinator()
    yield fake
    for client in fake.clients:
        client.close()
    fake.server.shutdown()
    assert fake.errors == []


def make_client(coord: FakeCoordinator, **kw: Any) -> CoordinatorClient:
    client = CoordinatorClient(coord.url, slot="gpu0", **kw)
    coord.clients.append(client)
    client.connect()
    return client


def registration_script(tasks: list[Any], after: Callable[[Peer], None] = Peer.hold
                        ) -> Callable[[Peer], None]:
    """Token -> subscribe, checking signatures and the token, then push `tasks` at once."""

    def script(peer: Peer) -> None:
        req = peer.recv()
        assert req["method"] == "roller_requestToken" and req["jsonrpc"] == "2.0"
        first = AuthMsg.from_json(req["params"][0])
        assert first.identity.token == ""
        assert first.recover_pk() == ACCOUNT._key_obj.public_key.to_compressed_bytes().hex()
        peer.answer(req, "a" * 32)
        req = peer.recv()
        assert req["method"] == "roller_subscribe" and req["params"][0] == "register"
        auth = AuthMsg.from_json(req["params"][1])
        assert auth.identity.token == "a" * 32
        assert auth.identity.timestamp == first.identity.timestamp
        assert auth.recover_pk() == first.recover_pk()
        assert (auth.identity.name, auth.identity.roller_type) == ("slot-0", 0)
        peer.answer(req, SUB)
        for task in tasks:  # back to back with the answer, as go-ethereum flushes them
            peer.notify(SUB, task)
        after(peer)

    return script


def test_connect_sends_no_origin(coord: FakeCoordinator) -> None:
    client = make_client(coord)
    assert client.connected
    client.close()
    assert coord.origins == [None]


def test_connect_refused_is_connection_lost() -> None:
    client = CoordinatorClient("ws://127.0.0.1:1/", call_timeout=2)
    with pytest.raises(ConnectionLost):
        client.connect()
    assert not client.connected and client.wait_disconnected(0)


def test_register_and_task_right_after_subscribe_answer(coord: FakeCoordinator) -> None:
    tasks: list[TaskMsg] = []
    got = threading.Event()
    coord.script = registration_script([
        {"id": "0xbad", "block_hashes": ["0x12"]},  # malformed: skipped, reader survives
        {"id": "0x1", "block_hashes": [H1]},
        {"id": "0x2", "type": 0, "block_hashes": [H1], "extra": 1},
    ])
    client = make_client(coord)

    def on_task(task: TaskMsg) -> None:
        tasks.append(task)
        if len(tasks) == 2:
            got.set()

    assert client.register(ACCOUNT, "slot-0", 0, "v4.0.2-test", on_task) == SUB
    assert got.wait(5)
    assert [t.id for t in tasks] == ["0x1", "0x2"]
    assert tasks[0] == TaskMsg(id="0x1", type=0, block_hashes=(H1,), sub_proofs=())
    assert client.connected
    client.close()


def test_unknown_subscription_and_failing_handler_do_not_stop_delivery(
    coord: FakeCoordinator,
) -> None:
    tasks: list[str] = []
    done = threading.Event()

    def after(peer: Peer) -> None:
        peer.notify("0xother", {"id": "0x9"})
        peer.send({"jsonrpc": "2.0", "method": "roller_subscription", "params": "junk"})
        peer.ws.send("not json\n")
        peer.notify(SUB, {"id": "0x3"})
        peer.hold()

    def on_task(task: TaskMsg) -> None:
        tasks.append(task.id)
        if task.id == "0x1":
            raise RuntimeError("handler bug")
        if task.id == "0x3":
            done.set()

    coord.script = registration_script([{"id": "0x1"}], after)
    client = make_client(coord)
    client.register(ACCOUNT, "slot-0", 0, "v", on_task)
    assert done.wait(5)
    assert tasks == ["0x1", "0x3"]
    client.close()


def test_answers_out_of_order(coord: FakeCoordinator) -> None:
    def script(peer: Peer) -> None:
        reqs = [peer.recv(), peer.recv(), peer.recv()]
        for req in reversed(reqs):  # answer last-first, each with its caller's name
            peer.answer(req, "token-" + req["params"][0]["message"]["name"])
        peer.hold()

    coord.script = script
    client = make_client(coord)
    results: dict[str, str] = {}

    def ask(name: str) -> None:
        auth = AuthMsg.signed(_identity(name), ACCOUNT)
        results[name] = client.request_token(auth)

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == {"a": "token-a", "b": "token-b", "c": "token-c"}
    client.close()


def test_request_ids_count_from_one(coord: FakeCoordinator) -> None:
    seen: list[Any] = []

    def script(peer: Peer) -> None:
        for _ in range(2):
            req = peer.recv()
            seen.append(req["id"])
            peer.answer(req, "t")
        peer.hold()

    coord.script = script
    client = make_client(coord)
    for _ in range(2):
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert seen == [1, 2]
    client.close()


def test_error_answer_is_coordinator_error(coord: FakeCoordinator) -> None:
    def script(peer: Peer) -> None:
        peer.error(peer.recv(), "signature verification failed")
        peer.hold()

    coord.script = script
    client = make_client(coord)
    with pytest.raises(CoordinatorError) as info:
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert (info.value.method, info.value.code, info.value.message) == (
        "roller_requestToken", -32000, "signature verification failed")
    assert client.connected  # an error answer is not a connection problem
    client.close()


def test_submit_proof(coord: FakeCoordinator) -> None:
    received: list[ProofMsg] = []

    def script(peer: Peer) -> None:
        req = peer.recv()
        assert req["method"] == "roller_submitProof" and len(req["params"]) == 1
        received.append(ProofMsg.from_json(req["params"][0]))
        time.sleep(0.3)  # verification takes a while: longer than call_timeout
        peer.answer(req, None)
        req = peer.recv()
        peer.error(req, "the roller or session id doesn't exist, pubkey: 02ab, ID: 0x2")
        peer.hold()

    coord.script = script
    client = make_client(coord, call_timeout=0.1, submit_timeout=5)
    msg = ProofMsg.signed(ProofDetail("0x1", 0, 1, None, "get traces failed"), ACCOUNT)
    client.submit_proof(msg)
    assert received == [msg]
    with pytest.raises(CoordinatorError, match="session id doesn't exist"):
        client.submit_proof(ProofMsg.signed(ProofDetail("0x2", 0, 1, None, "e"), ACCOUNT))
    client.close()


def test_unsubscribe(coord: FakeCoordinator) -> None:
    seen: list[Any] = []

    def after(peer: Peer) -> None:
        req = peer.recv()
        seen.append((req["method"], req["params"]))
        peer.answer(req, True)
        peer.hold()

    coord.script = registration_script([], after)
    client = make_client(coord)
    client.register(ACCOUNT, "slot-0", 0, "v", lambda t: None)
    client.unsubscribe()
    assert seen == [("roller_unsubscribe", [SUB])]
    client.unsubscribe()  # nothing left: no call
    client.close()


def test_connection_drop_fails_pending_calls_and_notifies_once(coord: FakeCoordinator) -> None:
    reasons: list[str] = []

    def script(peer: Peer) -> None:
        peer.recv()
        peer.recv()
        peer.ws.close()

    coord.script = script
    client = make_client(coord, on_disconnect=reasons.append)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(errors) == 2 and all(isinstance(e, ConnectionLost) for e in errors)
    assert client.wait_disconnected(5)
    assert not client.connected
    assert len(reasons) == 1
    with pytest.raises(ConnectionLost):
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert len(reasons) == 1


def test_call_timeout_is_connection_lost(coord: FakeCoordinator) -> None:
    reasons: list[str] = []
    coord.script = Peer.hold  # never answers
    client = make_client(coord, call_timeout=0.3, on_disconnect=reasons.append)
    start = time.monotonic()
    with pytest.raises(ConnectionLost, match="timed out"):
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert time.monotonic() - start < 2
    assert reasons and "timed out" in reasons[0]
    assert not client.connected


def test_pings_are_answered_while_idle(coord: FakeCoordinator) -> None:
    pongs: list[bool] = []

    def script(peer: Peer) -> None:
        for _ in range(8):
            pongs.append(peer.ws.ping().wait(0.5))
            time.sleep(0.2)
        peer.hold()

    coord.script = script
    reasons: list[str] = []
    # Idle timeout shorter than the test but longer than the ping gap: pings keep it alive.
    client = make_client(coord, idle_timeout=0.6, on_disconnect=reasons.append)
    time.sleep(1.2)
    assert len(pongs) >= 4 and all(pongs)
    assert reasons == []
    client.close()


def test_pongs_are_sent_after_the_coordinators_ping_race(coord: FakeCoordinator) -> None:
    """go-ethereum's ping loop (the coordinator's) drops the connection on a pong that
    arrives before it waits for one: every pong goes out PONG_DELAY_SECONDS later."""
    latencies: list[float] = []

    def script(peer: Peer) -> None:
        for _ in range(3):
            sent = time.monotonic()
            if peer.ws.ping().wait(2):
                latencies.append(time.monotonic() - sent)
        peer.hold()

    coord.script = script
    client = make_client(coord)
    wait_for(lambda: len(latencies) == 3, 10, "three pongs", 0.02)
    assert all(PONG_DELAY_SECONDS * 0.8 <= t < 1.0 for t in latencies), latencies
    client.close()


def test_silent_server_trips_idle_timeout(coord: FakeCoordinator) -> None:
    reasons: list[str] = []
    coord.script = Peer.hold
    client = make_client(coord, idle_timeout=0.3, on_disconnect=reasons.append)
    assert client.wait_disconnected(3)
    assert reasons and "no data" in reasons[0]


def test_fragmented_message_is_reassembled(coord: FakeCoordinator) -> None:
    token = "t" * 10000

    def script(peer: Peer) -> None:
        req = peer.recv()
        text = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": token}) + "\n"
        peer.ws.send(iter([text[i:i + 3072] for i in range(0, len(text), 3072)]))
        peer.hold()

    coord.script = script
    client = make_client(coord)
    assert client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT)) == token
    client.close()


def test_close_does_not_notify_and_reconnect_works(coord: FakeCoordinator) -> None:
    reasons: list[str] = []
    client = make_client(coord, on_disconnect=reasons.append)
    client.close()
    assert client.wait_disconnected(1) and not client.connected
    client.connect()
    assert client.connected
    client.close()
    assert reasons == []
    assert len(coord.origins) == 2


def test_redact_url() -> None:
    assert redact_url("ws://user:secret@host:8391/") == "ws://host:8391/"
    assert redact_url("ws://127.0.0.1:8391/") == "ws://127.0.0.1:8391/"


def _identity(name: str) -> Any:
    from roller.protocol import Identity

    return Identity(name=name, roller_type=0, timestamp=1700000000, version="v", token="")
