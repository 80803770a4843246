"""CoordinatorClient against a scripted coordinator (spec 1, 2, 6.3, 8).

Protocol logic runs over the in-memory transport pair (tests/memory_transport.py): no
sockets, no sleeps; call timeouts are checked through the client's injected ``wait``.
What needs real socket behaviour (no Origin header, refused connections, pings and the
delayed pong of Go's dropped-connection fact, fragmented frames, close and reconnect) runs
against an in-test WebSocket server on loopback that mimics go-ethereum framing: compact
JSON text frames ending in a newline, answers matched by id, notifications right behind
the subscribe answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import rlp
from eth_account import Account
from eth_utils.crypto import keccak
from memory_transport import MemoryCoordinator, MemoryEnd
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from roller.errors import ConfigError, ConnectionLost, CoordinatorError, WireFormatError
from roller.localrun import wait_for
from roller.protocol import (
    AggProof,
    AuthMsg,
    Identity,
    ProofDetail,
    ProofMsg,
    TaskMsg,
    WsVariant,
)
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.ws_transport import PONG_DELAY_SECONDS
from roller.redact import redact_url

ACCOUNT = Account.from_key("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
PK = ACCOUNT._key_obj.public_key.to_compressed_bytes().hex()
H1 = "0x" + "aa" * 32
SUB = "0x27939931d8d3f9ba86f2ad16a7ee762f"
V06, V07 = WsVariant.WS_2023_06, WsVariant.WS_2023_07


class Peer:
    """Coordinator side of one connection, driven by a test script; `raw` is either a
    websockets ServerConnection or a MemoryEnd."""

    def __init__(self, raw: ServerConnection | MemoryEnd) -> None:
        self.raw = raw

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if isinstance(self.raw, MemoryEnd):
            text: str | bytes = self.raw.recv_text(timeout)
        else:
            text = self.raw.recv(timeout)
        msg: dict[str, Any] = json.loads(text)
        return msg

    def send_text(self, text: str) -> None:
        if isinstance(self.raw, MemoryEnd):
            self.raw.send_text(text)
        else:
            self.raw.send(text)

    def send(self, obj: Any) -> None:
        self.send_text(json.dumps(obj, separators=(",", ":")) + "\n")

    def answer(self, req: dict[str, Any], result: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": req["id"], "result": result})

    def error(self, req: dict[str, Any], message: str, code: int = -32000) -> None:
        self.send({"jsonrpc": "2.0", "id": req["id"],
                   "error": {"code": code, "message": message}})

    def notify(self, sub: str, result: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": "roller_subscription",
                   "params": {"subscription": sub, "result": result}})

    def close(self) -> None:
        self.raw.close()

    def hold(self) -> None:
        """Keep the connection open until the client goes away."""
        if isinstance(self.raw, MemoryEnd):
            self.raw.wait_gone()
            return
        try:
            while True:
                self.raw.recv()
        except Exception:
            pass


Script = Callable[[Peer], None]


class FakeCoordinator:
    """Real WebSocket server on loopback (the socket-level tests)."""

    def __init__(self) -> None:
        self.script: Script = Peer.hold
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


class MemCoordinator:
    """The same scripts over the in-memory transport pair."""

    def __init__(self) -> None:
        self.memory = MemoryCoordinator()
        self.clients: list[CoordinatorClient] = []

    @property
    def script(self) -> Script:
        raise AttributeError("write-only")

    @script.setter
    def script(self, script: Script) -> None:
        self.memory.script = lambda end: script(Peer(end))


@pytest.fixture
def mem() -> Iterator[MemCoordinator]:
    fake = MemCoordinator()
    yield fake
    for client in fake.clients:
        client.close()
    fake.memory.join()
    assert fake.memory.errors == []


def make_client(coord: FakeCoordinator | MemCoordinator, **kw: Any) -> CoordinatorClient:
    if isinstance(coord, MemCoordinator):
        client = CoordinatorClient("ws://memory/", slot="gpu0",
                                   connector=coord.memory.connect, **kw)
    else:
        client = CoordinatorClient(coord.url, slot="gpu0", **kw)
    coord.clients.append(client)
    client.connect()
    return client


class RecordingWait:
    """Injected clock of a client's calls: records each call's timeout and waits for the
    answer (bounded); ``expire`` makes every call time out at once."""

    def __init__(self, expire: bool = False) -> None:
        self.timeouts: list[float] = []
        self.expire = expire

    def __call__(self, event: threading.Event, timeout: float) -> bool:
        self.timeouts.append(timeout)
        return False if self.expire else event.wait(5)


def registration_script(tasks: list[Any], after: Script = Peer.hold, *,
                        variant: WsVariant = V06, wire_type: int = 0) -> Script:
    """Token -> subscribe, checking signatures, the token and the Identity's wire form
    for `variant`, then push `tasks` at once."""

    def script(peer: Peer) -> None:
        req = peer.recv()
        assert req["method"] == "roller_requestToken" and req["jsonrpc"] == "2.0"
        first = AuthMsg.from_json(req["params"][0], variant=variant)
        assert first.identity.token == ""
        assert first.recover_pk() == PK
        assert ("timestamp" in req["params"][0]["message"]) == variant.has_timestamp
        peer.answer(req, "a" * 32)
        req = peer.recv()
        assert req["method"] == "roller_subscribe" and req["params"][0] == "register"
        auth = AuthMsg.from_json(req["params"][1], variant=variant)
        assert auth.identity.token == "a" * 32
        assert auth.identity.timestamp == first.identity.timestamp
        assert auth.recover_pk() == first.recover_pk()
        assert (auth.identity.name, auth.identity.roller_type) == ("slot-0", wire_type)
        peer.answer(req, SUB)
        for task in tasks:  # back to back with the answer, as go-ethereum flushes them
            peer.notify(SUB, task)
        after(peer)

    return script


# -- real sockets: what the transport itself must do ------------------------------------


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


def test_pings_are_answered_while_idle(coord: FakeCoordinator) -> None:
    pongs: list[bool] = []
    done = threading.Event()

    def script(peer: Peer) -> None:
        assert isinstance(peer.raw, ServerConnection)
        for _ in range(8):
            pongs.append(peer.raw.ping().wait(0.5))
            # The subject is elapsed time with nothing but pings (8 x 0.2 s > the 0.6 s
            # idle timeout), so this pause is the test, not a wait for a condition.
            time.sleep(0.2)
        done.set()
        peer.hold()

    coord.script = script
    reasons: list[str] = []
    # Idle timeout shorter than the test but longer than the ping gap: pings keep it alive.
    client = make_client(coord, idle_timeout=0.6, on_disconnect=reasons.append)
    assert done.wait(10)
    assert len(pongs) == 8 and all(pongs)
    assert reasons == [] and client.connected
    client.close()


def test_pongs_are_sent_after_the_coordinators_ping_race(coord: FakeCoordinator) -> None:
    """go-ethereum's ping loop (the coordinator's) drops the connection on a pong that
    arrives before it waits for one: every pong goes out PONG_DELAY_SECONDS later."""
    latencies: list[float] = []

    def script(peer: Peer) -> None:
        assert isinstance(peer.raw, ServerConnection)
        for _ in range(3):
            sent = time.monotonic()
            if peer.raw.ping().wait(2):
                latencies.append(time.monotonic() - sent)
        peer.hold()

    coord.script = script
    client = make_client(coord)
    wait_for(lambda: len(latencies) == 3, 10, "three pongs", 0.02)
    assert all(PONG_DELAY_SECONDS * 0.8 <= t < 1.0 for t in latencies), latencies
    client.close()


def test_fragmented_message_is_reassembled(coord: FakeCoordinator) -> None:
    token = "t" * 10000

    def script(peer: Peer) -> None:
        req = peer.recv()
        text = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": token}) + "\n"
        assert isinstance(peer.raw, ServerConnection)
        peer.raw.send(iter([text[i:i + 3072] for i in range(0, len(text), 3072)]))
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


# -- in memory: protocol logic ---------------------------------------------------------


def test_register_and_task_right_after_subscribe_answer(mem: MemCoordinator) -> None:
    tasks: list[TaskMsg] = []
    got = threading.Event()
    mem.script = registration_script([
        {"id": "0xbad", "block_hashes": ["0x12"]},  # malformed: skipped, reader survives
        {"id": "0x1", "block_hashes": [H1]},
        {"id": "0x2", "type": 0, "block_hashes": [H1], "extra": 1},
    ])
    client = make_client(mem)

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
    mem: MemCoordinator,
) -> None:
    tasks: list[str] = []
    done = threading.Event()

    def after(peer: Peer) -> None:
        peer.notify("0xother", {"id": "0x9"})
        peer.send({"jsonrpc": "2.0", "method": "roller_subscription", "params": "junk"})
        peer.send_text("not json\n")
        peer.notify(SUB, {"id": "0x3"})
        peer.hold()

    def on_task(task: TaskMsg) -> None:
        tasks.append(task.id)
        if task.id == "0x1":
            raise RuntimeError("handler bug")
        if task.id == "0x3":
            done.set()

    mem.script = registration_script([{"id": "0x1"}], after)
    client = make_client(mem)
    client.register(ACCOUNT, "slot-0", 0, "v", on_task)
    assert done.wait(5)
    assert tasks == ["0x1", "0x3"]
    client.close()


def test_answers_out_of_order(mem: MemCoordinator) -> None:
    def script(peer: Peer) -> None:
        reqs = [peer.recv(), peer.recv(), peer.recv()]
        for req in reversed(reqs):  # answer last-first, each with its caller's name
            peer.answer(req, "token-" + req["params"][0]["message"]["name"])
        peer.hold()

    mem.script = script
    client = make_client(mem)
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


def test_request_ids_count_from_one(mem: MemCoordinator) -> None:
    seen: list[Any] = []

    def script(peer: Peer) -> None:
        for _ in range(2):
            req = peer.recv()
            seen.append(req["id"])
            peer.answer(req, "t")
        peer.hold()

    mem.script = script
    client = make_client(mem)
    for _ in range(2):
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert seen == [1, 2]
    client.close()


def test_error_answer_is_coordinator_error(mem: MemCoordinator) -> None:
    def script(peer: Peer) -> None:
        peer.error(peer.recv(), "signature verification failed")
        peer.hold()

    mem.script = script
    client = make_client(mem)
    with pytest.raises(CoordinatorError) as info:
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert (info.value.method, info.value.code, info.value.message) == (
        "roller_requestToken", -32000, "signature verification failed")
    assert client.connected  # an error answer is not a connection problem
    client.close()


def test_submit_proof(mem: MemCoordinator) -> None:
    received: list[ProofMsg] = []
    wait = RecordingWait()

    def script(peer: Peer) -> None:
        req = peer.recv()
        assert req["method"] == "roller_submitProof" and len(req["params"]) == 1
        received.append(ProofMsg.from_json(req["params"][0]))
        peer.answer(req, None)
        req = peer.recv()
        peer.error(req, "the roller or session id doesn't exist, pubkey: 02ab, ID: 0x2")
        peer.hold()

    mem.script = script
    client = make_client(mem, call_timeout=0.1, submit_timeout=3600, wait=wait)
    msg = ProofMsg.signed(ProofDetail("0x1", 0, 1, None, "get traces failed"), ACCOUNT)
    client.submit_proof(msg)
    assert received == [msg]
    # Verification takes a while: a submission waits submit_timeout, not call_timeout.
    assert wait.timeouts == [3600]
    with pytest.raises(CoordinatorError, match="session id doesn't exist"):
        client.submit_proof(ProofMsg.signed(ProofDetail("0x2", 0, 1, None, "e"), ACCOUNT))
    client.close()


def test_unsubscribe(mem: MemCoordinator) -> None:
    seen: list[Any] = []

    def after(peer: Peer) -> None:
        req = peer.recv()
        seen.append((req["method"], req["params"]))
        peer.answer(req, True)
        peer.hold()

    mem.script = registration_script([], after)
    client = make_client(mem)
    client.register(ACCOUNT, "slot-0", 0, "v", lambda t: None)
    client.unsubscribe()
    assert seen == [("roller_unsubscribe", [SUB])]
    client.unsubscribe()  # nothing left: no call
    client.close()


def test_connection_drop_fails_pending_calls_and_notifies_once(mem: MemCoordinator) -> None:
    reasons: list[str] = []

    def script(peer: Peer) -> None:
        peer.recv()
        peer.recv()
        peer.close()

    mem.script = script
    client = make_client(mem, on_disconnect=reasons.append)
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


def test_call_timeout_is_connection_lost(mem: MemCoordinator) -> None:
    reasons: list[str] = []
    mem.script = Peer.hold  # never answers
    wait = RecordingWait(expire=True)
    client = make_client(mem, call_timeout=0.3, on_disconnect=reasons.append, wait=wait)
    with pytest.raises(ConnectionLost, match="timed out after 0.3s"):
        client.request_token(AuthMsg.signed(_identity("x"), ACCOUNT))
    assert wait.timeouts == [0.3]
    assert reasons and "timed out" in reasons[0]
    assert not client.connected
    assert mem.memory.transports[0].aborted


def test_silent_server_trips_idle_timeout(mem: MemCoordinator) -> None:
    reasons: list[str] = []
    mem.script = Peer.hold
    client = make_client(mem, idle_timeout=0.3, on_disconnect=reasons.append)
    assert client.wait_disconnected(3)
    assert reasons and "no data" in reasons[0]
    assert mem.memory.transports[0].released.wait(3)


# -- the 2023-07 variant (spec 8) ---------------------------------------------------------


@pytest.mark.parametrize(("roller_type", "wire_type"), [(0, 1), (1, 2)])
def test_0723_register_signs_identity_without_timestamp(
    mem: MemCoordinator, roller_type: int, wire_type: int,
) -> None:
    mem.script = registration_script([], variant=V07, wire_type=wire_type)
    client = make_client(mem, variant="ws-2023-07")
    assert client.variant is V07
    assert client.register(ACCOUNT, "slot-0", roller_type, "v", lambda t: None) == SUB


def test_0723_register_message_bytes(mem: MemCoordinator) -> None:
    """The requestToken param exactly as a 2023-07 Go roller sends it: no timestamp,
    roller_type always present, signed over RLP [name, roller_type, version, token]."""
    seen: list[dict[str, Any]] = []

    def script(peer: Peer) -> None:
        req = peer.recv()
        seen.append(req["params"][0])
        peer.error(req, "stop here")
        peer.hold()

    mem.script = script
    client = make_client(mem, variant=V07)
    with pytest.raises(CoordinatorError, match="stop here"):
        client.register(ACCOUNT, "slot-0", 0, "v4.1.0", lambda t: None)
    (param,) = seen
    assert param["message"] == {"name": "slot-0", "roller_type": 1, "version": "v4.1.0",
                                "token": ""}
    assert list(param["message"]) == ["name", "roller_type", "version", "token"]
    digest = keccak(rlp.encode([b"slot-0", 1, b"v4.1.0", b""]))
    assert AuthMsg.from_json(param, variant=V07).identity.hash() == digest
    assert param["signature"] == AuthMsg.signed(
        Identity("slot-0", 1, 0, "v4.1.0", "", V07), ACCOUNT).signature


def test_0723_tasks_arrive_in_roller_numbering(mem: MemCoordinator) -> None:
    tasks: list[TaskMsg] = []
    got = threading.Event()
    proof = {"proof": "AAAA", "instance": None, "final_pair": None, "vk": None,
             "block_count": 2}
    mem.script = registration_script([
        {"id": "0xundefined", "block_hashes": [H1]},  # type 0: undefined, skipped
        {"id": "0xillegal", "type": 3, "block_hashes": [H1]},  # illegal, skipped
        {"id": "0xc", "type": 1, "block_hashes": [H1]},
        {"id": "0xb", "type": 2, "sub_proofs": [proof]},
    ], variant=V07, wire_type=1)
    client = make_client(mem, variant=V07)

    def on_task(task: TaskMsg) -> None:
        tasks.append(task)
        if len(tasks) == 2:
            got.set()

    client.register(ACCOUNT, "slot-0", 0, "v", on_task)
    assert got.wait(5)
    assert [(t.id, t.type) for t in tasks] == [("0xc", 0), ("0xb", 1)]
    assert tasks[0] == TaskMsg(id="0xc", type=0, block_hashes=(H1,), sub_proofs=())


@pytest.mark.parametrize(("task_type", "wire_type"), [(0, 1), (1, 2)])
def test_0723_submit_carries_and_signs_the_wire_type(
    mem: MemCoordinator, task_type: int, wire_type: int,
) -> None:
    received: list[dict[str, Any]] = []

    def script(peer: Peer) -> None:
        req = peer.recv()
        received.append(req["params"][0])
        peer.answer(req, None)
        peer.hold()

    mem.script = script
    client = make_client(mem, variant=V07)
    detail = ProofDetail("0x1", task_type, 1, None, "get traces failed")
    client.submit_proof(client.sign_proof(detail, ACCOUNT))
    (param,) = received
    assert param["zkProof"] == {"id": "0x1", "type": wire_type, "status": 1, "proof": None,
                                "error": "get traces failed"}
    digest = keccak(rlp.encode([b"0x1", wire_type, 1, [], b"get traces failed"]))
    msg = ProofMsg.from_json(param, variant=V07)
    assert msg.detail == detail and msg.detail.hash(V07) == digest
    assert msg.recover_pk() == PK


def test_0723_failure_report_is_followed_by_a_new_registration(mem: MemCoordinator) -> None:
    """Spec 8: after a failure report the key stays busy until it registers again."""
    tasks: list[TaskMsg] = []
    got = threading.Event()
    seen: list[str] = []

    def after(peer: Peer) -> None:
        req = peer.recv()  # an accepted proof: nothing follows it
        seen.append(req["method"])
        peer.answer(req, None)
        req = peer.recv()  # a failure report: unsubscribe, token, subscribe follow
        seen.append(req["method"])
        peer.answer(req, None)
        req = peer.recv()
        assert (req["method"], req["params"]) == ("roller_unsubscribe", [SUB])
        peer.answer(req, True)
        registration_script([{"id": "0xnext", "type": 1}], variant=V07, wire_type=1)(peer)

    mem.script = registration_script([], after, variant=V07, wire_type=1)
    reasons: list[str] = []
    client = make_client(mem, variant=V07, on_disconnect=reasons.append)

    def on_task(task: TaskMsg) -> None:
        tasks.append(task)
        got.set()

    client.register(ACCOUNT, "slot-0", 0, "v", on_task)
    client.submit_proof(client.sign_proof(
        ProofDetail("0x1", 0, 0, AggProof(b"p", b"", b"", b"", 1), ""), ACCOUNT))
    client.submit_proof(client.sign_proof(ProofDetail("0x2", 0, 1, None, "e"), ACCOUNT))
    assert got.wait(5)  # the new subscription delivers to the same handler
    assert [t.id for t in tasks] == ["0xnext"] and tasks[0].type == 0
    assert seen == ["roller_submitProof", "roller_submitProof"]
    assert client.connected and reasons == []


def test_0723_failed_registration_after_a_failure_report_drops_the_connection(
    mem: MemCoordinator,
) -> None:
    def after(peer: Peer) -> None:
        peer.answer(peer.recv(), None)  # the failure report is accepted
        peer.answer(peer.recv(), True)  # unsubscribe
        peer.error(peer.recv(), "signature verification failed")  # token request
        peer.hold()

    mem.script = registration_script([], after, variant=V07, wire_type=1)
    reasons: list[str] = []
    client = make_client(mem, variant=V07, on_disconnect=reasons.append)
    client.register(ACCOUNT, "slot-0", 0, "v", lambda t: None)
    # Accepted: no error for the caller, whose next step would be to send it again.
    client.submit_proof(client.sign_proof(ProofDetail("0x2", 0, 1, None, "e"), ACCOUNT))
    assert client.wait_disconnected(5) and not client.connected
    assert len(reasons) == 1 and "task_id=0x2" in reasons[0]


def test_0623_failure_report_keeps_the_registration(mem: MemCoordinator) -> None:
    def after(peer: Peer) -> None:
        peer.answer(peer.recv(), None)
        peer.hold()  # a re-registration would fail here: nothing else is answered

    mem.script = registration_script([], after)
    client = make_client(mem)
    client.register(ACCOUNT, "slot-0", 0, "v", lambda t: None)
    client.submit_proof(ProofMsg.signed(ProofDetail("0x2", 0, 1, None, "e"), ACCOUNT))
    assert client.connected


def test_0723_submit_refuses_a_proof_signed_for_another_variant(mem: MemCoordinator) -> None:
    client = make_client(mem, variant=V07)
    msg = ProofMsg.signed(ProofDetail("0x1", 0, 1, None, "e"), ACCOUNT)  # ws-2023-06
    with pytest.raises(WireFormatError, match="task_id=0x1 slot=gpu0"):
        client.submit_proof(msg)
    assert client.connected  # nothing was sent


def test_unknown_variant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'ws-2023-08' is not a WebSocket variant"):
        CoordinatorClient("ws://memory/", slot="gpu0", variant="ws-2023-08")


def test_default_variant_is_0623() -> None:
    assert CoordinatorClient("ws://memory/").variant is V06


def test_redact_url() -> None:
    # the one rule of roller.redact: userinfo, path and query masked, scheme/host/port kept
    assert redact_url("ws://user:secret@host:8391/") == "ws://***@host:8391"
    assert redact_url("ws://127.0.0.1:8391/") == "ws://127.0.0.1:8391"
    assert redact_url("wss://host/ws/key?t=1") == "wss://host/***?***"


def _identity(name: str) -> Identity:
    return Identity(name=name, roller_type=0, timestamp=1700000000, version="v", token="")
