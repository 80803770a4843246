"""HttpCoordinatorClient and HttpCoordinatorSession against the devnet HTTP coordinator over
loopback, per generation: login, get_task, submit, failure reports, expiry, wrong generation,
auto-detection; and the full Devnet with --protocol http-*."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from devnet_helpers import BLOCK_02, BLOCK_03, TRACES
from eth_account import Account

from roller.devnet.devnet import Devnet
from roller.devnet.http_coordinator import HttpCoordinator, HttpCoordinatorConfig
from roller.devnet.tasksource import FAILED, VERIFIED, TaskBook, TaskRecord
from roller.devnet.verifier import MOCK_INVALID_PROOF, StandInVerifier
from roller.errors import ConnectionLost, WrongGeneration
from roller.protocol import http_errors as he
from roller.protocol import http_jwt
from roller.protocol.http_client import HttpCoordinatorClient, detect_generation
from roller.protocol.http_enums import FailureType, Generation
from roller.protocol.http_messages import GetTaskResponse, SubmitProofRequest, compressed_pk
from roller.protocol.http_proofs import encode_proof
from roller.protocol.messages import AggProof, ProofDetail, TaskMsg, WsVariant
from roller.protocol.session import HttpCoordinatorSession, WsCoordinatorSession

GENS = [Generation.H1, Generation.H2, Generation.H3]
VERSION = "v4.4.45-000000-000000-000000"


def _stand_in_instance(blocks: int) -> bytes:
    """216 bytes that read as a chunk instance and as a one-entry batch/bundle instance, each
    with `blocks` blocks: what survives the coordinator's struct is re-derived from it."""
    inst = bytearray(b"\x02" * 216)
    inst[144:152] = inst[208:216] = blocks.to_bytes(8, "big")
    return bytes(inst)


GOOD = AggProof(b"\x01" * 32, _stand_in_instance(2), _stand_in_instance(2)[136:200],
                b"\x04" * 32, 2)
BAD = AggProof(MOCK_INVALID_PROOF, b"", b"\x03" * 32, b"", 0)
CHUNK = "0x" + "11" * 32


def answer(task: GetTaskResponse, proof: AggProof) -> str:
    """The proof JSON in the task's generation's shape (as the session sends it)."""
    return encode_proof(task.generation, task.task_type, task.task_id, proof)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_coordinator(gen: Generation, clock: Clock, **cfg: Any) -> HttpCoordinator:
    book = TaskBook(batch=True)
    # The Darwin-era generations' tasks are of darwinV2 (the devnet's default chain).
    book.add(TaskRecord(id=CHUNK, type=0, block_hashes=(BLOCK_02, BLOCK_03), source="chunk",
                        chain=0, block_numbers=(2, 3),
                        fork="darwinV2" if gen.rank >= 3 else "homestead"))
    return HttpCoordinator(book, StandInVerifier(),
                           HttpCoordinatorConfig(generation=gen, **cfg), clock=clock)


@pytest.fixture(params=GENS, ids=[g.value for g in GENS])
def coord(request: pytest.FixtureRequest, clock: Clock) -> Iterator[HttpCoordinator]:
    c = make_coordinator(request.param, clock)
    c.start()
    yield c
    c.stop()


def url_of(c: HttpCoordinator) -> str:
    assert c._server is not None
    return f"http://127.0.0.1:{c._server.server_address[1]}"


def client_for(c: HttpCoordinator, account: Any = None, gen: Generation | None = None,
               **kw: Any) -> HttpCoordinatorClient:
    return HttpCoordinatorClient(url_of(c), gen or c.gen, account or Account.create(),
                                 prover_name="roller-test", prover_version=VERSION,
                                 prover_types=(1, 2), vks=("mock_vk",), **kw)


def test_login_get_task_submit_valid(coord: HttpCoordinator) -> None:
    client = client_for(coord)
    client.login()
    assert client.claims["public_key"] == client.public_key
    assert "token" not in repr(client) and client.public_key[10:] not in repr(client)
    assert client.get_task((2,), 10**6) is None  # no batch yet: 20004 -> None
    task = client.get_task((1,), 10**6)
    assert task is not None and task.task_id == CHUNK
    assert task.block_hashes() == (BLOCK_02, BLOCK_03)
    assert bool(task.uuid) == (coord.gen != Generation.H1)
    with pytest.raises(he.TaskAlreadyAssigned):  # one assigned task per key
        client.get_task((1,), 10**6)
    client.submit_proof(SubmitProofRequest.success(task, answer(task, GOOD)))
    assert coord.book.tasks[CHUNK].state == VERIFIED
    with pytest.raises(he.AlreadySubmitted) as err:
        client.submit_proof(SubmitProofRequest.success(task, answer(task, GOOD)))
    assert err.value.permanent
    batch = client.get_task((2,), 10**6)  # the chain's batch, with the chunk proof inline
    assert batch is not None and batch.task_type == 2
    data = json.loads(batch.task_data)
    assert len(data["chunk_proofs"]) == 1 and data["chunk_infos"][0]["is_padding"] is False
    assert ("batch_header" in data) == (coord.gen == Generation.H3)
    client.submit_proof(SubmitProofRequest.success(batch, answer(batch, GOOD)))
    if coord.gen == Generation.H3:
        bundle = client.get_task((3,), 10**6)
        assert bundle is not None and bundle.task_type == 3
        assert not bundle.task_id.startswith("0x") and len(bundle.task_id) == 64
        client.submit_proof(SubmitProofRequest.success(bundle, "{}"))  # mock accepts {}


def test_failure_report_is_accepted_and_task_comes_back(coord: HttpCoordinator) -> None:
    client = client_for(coord)
    first = client.get_task((1,), 10**6)
    assert first is not None
    # 20003 "proof msg status not ok" is the normal answer: no exception.
    client.submit_proof(SubmitProofRequest.failure(first, "out of memory"))
    again = client.get_task((1,), 10**6)  # handed out again at once, same key too
    assert again is not None and again.task_id == first.task_id
    if coord.gen != Generation.H1:
        assert again.uuid != first.uuid
    if coord.gen == Generation.H2:  # no chunk verification there: report a failure again
        client.submit_proof(SubmitProofRequest.failure(again, "out of memory"))
    else:
        with pytest.raises(he.InvalidProof):
            client.submit_proof(SubmitProofRequest.success(again, answer(again, BAD)))
    assert coord.book.tasks[CHUNK].state == FAILED  # session_attempts (2) spent
    assert client.get_task((1,), 10**6) is None


def test_h2_does_not_verify_chunk_proofs(clock: Clock) -> None:
    c = make_coordinator(Generation.H2, clock)
    c.start()
    try:
        client = client_for(c)
        task = client.get_task((1,), 10**6)
        assert task is not None
        client.submit_proof(SubmitProofRequest.success(task, answer(task, BAD)))
        assert c.book.tasks[CHUNK].state == VERIFIED
    finally:
        c.stop()


def test_height_filter_and_unknown_task(coord: HttpCoordinator) -> None:
    client = client_for(coord)
    assert client.get_task((1,), 2) is None  # the chunk ends at block 3
    task = client.get_task((1,), 3)
    assert task is not None
    other = client_for(coord)
    with pytest.raises(he.SubmitTaskNotFound):  # (uuid | task_id, pk) of another key
        other.submit_proof(SubmitProofRequest.success(task, "{}"))


def test_token_expiry_relogs_in(clock: Clock) -> None:
    c = make_coordinator(Generation.H3, clock, login_ttl=5)
    c.start()
    try:
        client = client_for(c, relogin_margin=0, clock=clock)
        assert client.get_task((2,), 10**6) is None
        first_token = client._token
        clock.now += 10  # the login JWT is expired now; the client only learns it from 50001
        task = client.get_task((1,), 10**6)
        assert task is not None and client._token != first_token
        assert len(c.state.used_challenges) == 2
        # Proactive: with the default margin the client logs in before the call once three
        # quarters of the token's life are spent (still valid at the coordinator).
        client2 = client_for(c, clock=clock)
        client2.login()
        assert len(c.state.used_challenges) == 3
        assert client2.get_task((2,), 10**6) is None
        assert len(c.state.used_challenges) == 3
        clock.now += 4
        assert client2.get_task((2,), 10**6) is None
        assert len(c.state.used_challenges) == 4
    finally:
        c.stop()


def test_stale_challenge_and_reuse(clock: Clock) -> None:
    c = make_coordinator(Generation.H1, clock, challenge_ttl=5)
    c.start()
    try:
        client = client_for(c)
        challenge = client.challenge().token
        claims = http_jwt.claims(challenge)
        assert sorted(claims) == ["exp", "orig_iat", "random"]
        assert len(claims["random"]) == 44 and claims["random"].endswith("=")
        body = client_for(c)._message(challenge)
        from roller.protocol.http_messages import LoginRequest

        login = LoginRequest.signed(body, Account.create()).to_json()
        headers = {"Authorization": "Bearer " + challenge,
                   "Content-Type": "application/json"}
        url = url_of(c) + "/coordinator/v1/login"
        assert requests.post(url, json=login, headers=headers, timeout=5).json()["errcode"] == 0
        again = requests.post(url, json=login, headers=headers, timeout=5).json()
        assert again["errcode"] == 50000 and again["errmsg"].endswith("have been used")
        assert again["errmsg"] == again["errmsg"].lower()
        clock.now += 10
        stale = requests.post(url, json=login, headers=headers, timeout=5).json()
        assert (stale["errcode"], stale["errmsg"]) == (50001, "token is expired")
        other = requests.post(url, json=login, timeout=5).json()
        assert (other["errcode"], other["errmsg"]) == (50000, "cookie token is empty")
        page = requests.get(url_of(c) + "/coordinator/v1/nope", timeout=5)
        assert (page.status_code, page.text) == (404, "404 page not found")
    finally:
        c.stop()


@pytest.mark.parametrize("client_gen,server_gen,error", [
    (Generation.H3, Generation.H1, WrongGeneration),
    (Generation.H3, Generation.H2, WrongGeneration),
    (Generation.H1, Generation.H3, he.LoginVerifyFailure),
    (Generation.H4, Generation.H3, he.LoginVerifyFailure),
])
def test_wrong_generation_is_caught_at_login(client_gen: Generation, server_gen: Generation,
                                             error: type[Exception], clock: Clock) -> None:
    c = make_coordinator(server_gen, clock)
    c.start()
    try:
        with pytest.raises(error):
            client_for(c, gen=client_gen).login()
    finally:
        c.stop()


def test_h2_with_fork_against_h1_layout_is_wrong_generation(clock: Clock) -> None:
    c = make_coordinator(Generation.H1, clock)
    c.start()
    try:
        client = HttpCoordinatorClient(url_of(c), Generation.H2, Account.create(),
                                       prover_name="n", prover_version=VERSION,
                                       hard_fork_name="curie")
        with pytest.raises(WrongGeneration, match="wrong generation"):
            client.login()
    finally:
        c.stop()


def test_h3_version_rule(clock: Clock) -> None:
    c = make_coordinator(Generation.H3, clock, min_prover_version="v4.4.45")
    c.start()
    try:
        client_for(c).login()
        bad = HttpCoordinatorClient(url_of(c), Generation.H3, Account.create(),
                                    prover_name="n", prover_version="v4.4.44-x")
        with pytest.raises(he.LoginVersionRejected):
            bad.login()
        badvk = HttpCoordinatorClient(url_of(c), Generation.H3, Account.create(),
                                      prover_name="n", prover_version=VERSION,
                                      prover_types=(1,), vks=("other",))
        with pytest.raises(he.LoginVkRejected):
            badvk.login()
    finally:
        c.stop()


def test_detect_generation(coord: HttpCoordinator) -> None:
    found = detect_generation(url_of(coord), Account.create(), prover_name="n",
                              prover_version=VERSION, prover_types=(1,), vks=("mock_vk",))
    assert found.generation == coord.gen and not found.h2_always_four


def test_detect_generation_without_http_api(clock: Clock) -> None:
    c = make_coordinator(Generation.H1, clock)
    c.start()
    url = url_of(c)
    with pytest.raises(ConnectionLost):  # an outage is not "the WS era"
        c.stop()
        detect_generation(url, Account.create(), prover_name="n", prover_version=VERSION)


def test_transport_errors_are_connection_lost(clock: Clock) -> None:
    c = make_coordinator(Generation.H3, clock)
    c.start()
    url = url_of(c)
    c.stop()
    client = HttpCoordinatorClient(url, Generation.H3, Account.create(), prover_name="n",
                                   prover_version=VERSION)
    with pytest.raises(ConnectionLost):
        client.get_task((1,), 1)


def test_session_polls_when_idle_and_submits(coord: HttpCoordinator) -> None:
    account = Account.create()
    session = HttpCoordinatorSession(client_for(coord, account), slot="s0",
                                     task_types=(1,), prover_height=lambda: 10**6,
                                     poll_interval=0.05, refused_interval=0.05)
    got: list[TaskMsg] = []
    arrived = threading.Event()
    busy = threading.Event()

    def on_task(task: TaskMsg) -> None:
        busy.set()
        got.append(task)
        arrived.set()

    session.open(on_task, idle=lambda: not busy.is_set())
    try:
        assert session.connected and session.generation == coord.gen.value
        assert arrived.wait(5)
        task = got[0]
        assert task.block_hashes == (BLOCK_02, BLOCK_03) and task.http_task
        session.submit(task, ProofDetail(id=task.id, type=task.type, status=0, proof=GOOD,
                                         error=""), account)
        assert coord.book.tasks[CHUNK].state == VERIFIED
        busy.clear()
        session.poke()
    finally:
        session.close()
    assert not session.connected
    assert len(got) == 1


def test_session_failure_report_and_unknown_task(coord: HttpCoordinator) -> None:
    account = Account.create()
    session = HttpCoordinatorSession(client_for(coord, account), task_types=(1,),
                                     prover_height=lambda: 10**6, poll_interval=0.05)
    got: list[TaskMsg] = []
    arrived = threading.Event()
    session.open(lambda t: (got.append(t), arrived.set()), idle=lambda: not got)
    try:
        assert arrived.wait(5)
        task = got[0]
        session.submit(task, ProofDetail(id=task.id, type=task.type, status=1, proof=None,
                                         error="prover panicked"), account)
        rows = coord.state.rows
        assert rows[-1].status == "invalid" and rows[-1].failure_type == 2
        from roller.errors import WireFormatError

        with pytest.raises(WireFormatError, match="does not belong"):
            session.submit(task, ProofDetail(id="nope", type=0, status=0, proof=GOOD,
                                             error=""), account)
        ws_task = TaskMsg(id="0x01", type=0, block_hashes=(), sub_proofs=())
        with pytest.raises(WireFormatError, match="not an HTTP-generation task"):
            session.submit(ws_task, ProofDetail(id="0x01", type=0, status=0, proof=GOOD,
                                                error=""), account)
    finally:
        session.close()


def test_ws_session_adapter_delegates() -> None:
    calls: list[str] = []

    class FakeClient:
        slot = "s"
        connected = True
        variant = WsVariant.WS_2023_06

        def connect(self) -> None:
            calls.append("connect")

        def register(self, *args: Any) -> str:
            calls.append(f"register {args[1]} {args[2]}")
            return "sub"

        def submit_proof(self, msg: Any) -> None:
            calls.append(f"submit {msg.detail.id}")

        def unsubscribe(self) -> None:
            calls.append("unsubscribe")

        def close(self) -> None:
            calls.append("close")

    account = Account.create()
    session = WsCoordinatorSession(FakeClient(), account, "roller", 0, "v")  # type: ignore[arg-type]
    session.open(lambda t: None, lambda: True)
    session.poke()
    ws_task = TaskMsg(id="0x01", type=0, block_hashes=(), sub_proofs=())
    session.submit(ws_task, ProofDetail(id="0x01", type=0, status=0, proof=GOOD, error=""),
                   account)
    session.close()
    assert session.connected and session.generation == "ws-2023-06"
    assert calls == ["connect", "register roller 0", "submit 0x01", "unsubscribe", "close"]


@pytest.mark.parametrize("gen", ["http-h1", "http-h2", "http-h3"])
def test_devnet_protocol_http(gen: str) -> None:
    with Devnet(ws_port=0, l2_port=0, control_port=0, http_port=0, verifier="stand-in",
                trace_dir=TRACES, chunk_size=2, dispatch_interval=0.1, seed=1,
                protocol=gen, login_ttl=60) as net:
        assert net.coordinator_url.startswith("http://127.0.0.1:")
        account = Account.create()
        client = HttpCoordinatorClient(net.coordinator_url, gen, account, prover_name="n",
                                       prover_version=VERSION, prover_types=(1, 2),
                                       vks=("mock_vk",))
        task = client.get_task((1,), 10**9)
        assert task is not None
        client.submit_proof(SubmitProofRequest.success(task, answer(task, GOOD)))
        pushed = requests.post(net.control_url + "push_task",
                               json={"type": 0, "block_hashes": [BLOCK_02]}, timeout=5)
        assert pushed.status_code == 200
        ledger = net.ledger()
        assert ledger["protocol"] == gen
        assert ledger["http"]["prover_tasks"][0]["pk"] == compressed_pk(account)
        verified = [t for t in ledger["tasks"] if t["state"] == VERIFIED]
        assert verified and verified[0]["submissions"][0]["verdict"] == "valid"
        net.restart()  # same port, same secret: the token survives
        assert client.get_task((1,), 10**9) is not None


def raw(c: HttpCoordinator, endpoint: str, body: Any, token: str | None = None,
        json_header: bool = True) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} if json_header else {}
    if token:
        headers["Authorization"] = "Bearer " + token
    resp = requests.post(f"{url_of(c)}/coordinator/v1/{endpoint}", data=json.dumps(body),
                         headers=headers, timeout=5)
    assert resp.status_code == 200  # every envelope, errors included
    answer: dict[str, Any] = resp.json()
    return answer


def test_wire_details_of_the_devnet(clock: Clock) -> None:
    c = make_coordinator(Generation.H3, clock)
    c.start()
    try:
        client = client_for(c)
        client.login()
        token = client._token
        # Without Content-Type the body is ignored: default parameters, random type, height 0.
        answer = raw(c, "get_task", {"prover_height": 10**6, "task_types": [1]}, token,
                     json_header=False)
        assert (answer["errcode"], answer["errmsg"]) == (20004, "get empty prover task")
        answer = raw(c, "get_task", {"prover_height": -1}, token)
        assert answer["errcode"] == 20001
        answer = raw(c, "get_task", {"prover_height": 1, "task_types": [9]}, token)
        assert answer["errmsg"] == "parameter wrong proof type:illegal proof type: 9"
        task = client.get_task((1,), 10**6)
        assert task is not None
        body = {"uuid": task.uuid, "task_id": task.task_id, "task_type": 1, "status": 0,
                "proof": "hello"}
        answer = raw(c, "submit_proof", body, token)
        assert he.error_class(answer["errcode"], answer["errmsg"]) is he.ProofUnparsable
        assert c.state.rows[-1].status == "assigned"  # stays assigned until the timeout
        answer = raw(c, "submit_proof", {**body, "task_type": 0, "proof": "{}"}, token)
        assert answer["errcode"] == 20001 and "'TaskType' failed on the 'required'" in \
            answer["errmsg"]
        challenge = client.challenge().token
        answer = raw(c, "get_task", {"prover_height": 1}, challenge)
        assert he.error_class(answer["errcode"], answer["errmsg"]) is he.NoPublicKey
        clock.now += 400  # past the collection time: the row times out, a late proof is refused
        answer = raw(c, "submit_proof", {**body, "proof": "{}"}, token)
        assert he.error_class(answer["errcode"], answer["errmsg"]) is he.AlreadySubmitted
        assert c.state.rows[-1].failure_type == 1
    finally:
        c.stop()


def test_h4_redelivers_the_assigned_task_and_keeps_a_failed_one_from_its_key(
        clock: Clock) -> None:
    c = make_coordinator(Generation.H4, clock)
    c.start()
    try:
        account = Account.create()
        client = client_for(c, account)
        task = client.get_task((1,), 10**6)
        assert task is not None and task.task_id == CHUNK
        assert json.loads(task.task_data)["fork_name"] == "darwinv2"
        again = client.get_task((1,), 10**6)  # same type: the same assignment again
        assert again is not None and again.uuid == task.uuid
        with pytest.raises(he.TaskAlreadyAssigned):  # another type while it holds one
            client.get_task((2,), 10**6)
        client.submit_proof(SubmitProofRequest.failure(task, "no traces", FailureType.NO_PANIC))
        assert client.get_task((1,), 10**6) is None  # not to the key that failed it
        other = client_for(c)
        handed = other.get_task((1,), 10**6)
        assert handed is not None and handed.task_id == CHUNK and handed.uuid != task.uuid
        other.submit_proof(SubmitProofRequest.success(handed, answer(handed, GOOD)))
        assert c.book.tasks[CHUNK].state == VERIFIED
    finally:
        c.stop()


def test_verify_delay_applies_to_http_and_ws_verification() -> None:
    with Devnet(ws_port=0, l2_port=0, control_port=0, http_port=0, verifier="stand-in",
                trace_dir=TRACES, protocol="http-h1", verify_delay=0.5) as net:
        assert net.http is not None and net.sessions is not None
        assert (net.http.config.verify_delay, net.sessions.config.submit_delay) == (0.5, 0.5)
        changed = requests.post(net.control_url + "submit_delay", json={"seconds": 0},
                                timeout=5)
        assert changed.status_code == 200
        assert (net.http.config.verify_delay, net.sessions.config.submit_delay) == (0, 0)
