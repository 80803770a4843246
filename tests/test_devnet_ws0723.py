"""The 2023-07 WebSocket variant end to end: CoordinatorClient(variant="ws-2023-07")
against the devnet serving it (in process and as `roller devnet --protocol ws-2023-07`)
over loopback, plus the variant's wire facts on a raw socket (spec section 8)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from devnet_helpers import (
    BLOCK_02,
    BLOCK_03,
    RawWs,
    good_proof,
    make_devnet,
    start_devnet_process,
    stop_devnet_process,
    wait_until,
)
from eth_account import Account

from roller.devnet import Devnet
from roller.errors import CoordinatorError
from roller.protocol import AuthMsg, Identity, ProofDetail, ProofMsg, TaskMsg, WsVariant
from roller.protocol.coordinator_client import CoordinatorClient

V07 = WsVariant.WS_2023_07


def make_net(**overrides: Any) -> Devnet:
    return make_devnet(**{"protocol": "ws-2023-07", **overrides})


@pytest.fixture
def net() -> Iterator[Devnet]:
    with make_net() as devnet:
        yield devnet


class Roller:
    """One 2023-07 identity driven through the real CoordinatorClient."""

    def __init__(self, url: str, name: str = "slot0", roller_type: int = 0) -> None:
        self.account = Account.create()
        self.url = url
        self.name = name
        self.roller_type = roller_type
        self.tasks: queue.Queue[TaskMsg] = queue.Queue()
        self.client = self.connect()

    def connect(self) -> CoordinatorClient:
        client = CoordinatorClient(self.url, slot=self.name, call_timeout=5, submit_timeout=20,
                                   variant="ws-2023-07")
        client.connect()
        return client

    @property
    def pk(self) -> str:
        identity = Identity(self.name, 1, 0, "v", "", V07)
        return AuthMsg.signed(identity, self.account).recover_pk()

    def register(self) -> str:
        return self.client.register(self.account, self.name, self.roller_type, "v-test",
                                    self.tasks.put)

    def next_task(self, timeout: float = 5) -> TaskMsg:
        return self.tasks.get(timeout=timeout)

    def prove(self, task: TaskMsg) -> None:
        """Submit an honest stand-in proof (it carries the task's block count)."""
        blocks = (sum(p.block_count for p in task.sub_proofs) if task.sub_proofs
                  else len(task.block_hashes))
        self.submit(ProofDetail(task.id, task.type, 0, good_proof(blocks), ""))

    def submit(self, detail: ProofDetail) -> None:
        self.client.submit_proof(self.client.sign_proof(detail, self.account))

    def close(self) -> None:
        self.client.close()


def task_entry(net: Devnet, task_id: str) -> dict[str, Any]:
    return next(t for t in net.ledger()["tasks"] if t["id"] == task_id)


def test_chunk_then_batch_proved_and_accepted() -> None:
    """The brief's run: a chunk roller and a batch roller register with 2023-07
    identities, get every chunk task and then the batch over their proofs, in roller's
    own numbering, and every proof is accepted and verified."""
    with make_net(chunk_tasks=True, chunk_size=2, batch=True) as net:
        agg = Roller(net.ws_url, "agg", roller_type=1)
        agg.register()
        chunk = Roller(net.ws_url, "chunk")
        chunk.register()
        chunk_ids = []
        for _ in range(3):  # chains of the fixture set: [02, 03], [04], [05]
            task = chunk.next_task()
            assert task.type == 0 and task.block_hashes and not task.sub_proofs
            chunk_ids.append(task.id)
            chunk.prove(task)
        batch = agg.next_task()
        assert batch.type == 1 and len(batch.sub_proofs) == 1 and not batch.block_hashes
        agg.prove(batch)
        ledger = {t["id"]: t for t in net.ledger()["tasks"]}
        assert ledger[batch.id]["state"] == "verified" and ledger[batch.id]["source"] == "batch"
        for task_id in [*chunk_ids, batch.id]:
            (sub,) = ledger[task_id]["submissions"]
            assert sub["outcome"] == "valid" and sub["status"] == 0
        assert {(s["name"], s["type"]) for t in ledger.values() for s in t["submissions"]} == {
            ("chunk", 0), ("agg", 1)}
        agg.close()
        chunk.close()


def test_wire_numbers_and_identity_on_a_raw_socket(net: Devnet) -> None:
    """What crosses the wire: a 2023-07 identity without timestamp registers, and task
    notifications carry type 1 (chunk) and 2 (batch)."""
    account = Account.create()
    ws = RawWs(net.ws_url)
    try:
        first = AuthMsg.signed(Identity("raw", 1, 0, "v", "", V07), account)
        assert "timestamp" not in first.to_json()["message"]
        token = ws.call("roller_requestToken", [first.to_json()])["result"]
        auth = AuthMsg.signed(Identity("raw", 1, 0, "v", token, V07), account)
        assert "result" in ws.call("roller_subscribe", ["register", auth.to_json()])
        task_id = net.push_task(block_hashes=[BLOCK_02])
        note = ws.next_notification()["params"]["result"]
        assert note == {"id": task_id, "type": 1, "block_hashes": [BLOCK_02]}
    finally:
        ws.close()
    ws = RawWs(net.ws_url)
    try:
        batch_account = Account.create()
        first = AuthMsg.signed(Identity("raw-b", 2, 0, "v", "", V07), batch_account)
        token = ws.call("roller_requestToken", [first.to_json()])["result"]
        auth = AuthMsg.signed(Identity("raw-b", 2, 0, "v", token, V07), batch_account)
        assert "result" in ws.call("roller_subscribe", ["register", auth.to_json()])
        batch_id = net.push_task(task_type=1, sub_proofs=[good_proof(1)])
        note = ws.next_notification()["params"]["result"]
        assert note["id"] == batch_id and note["type"] == 2
    finally:
        ws.close()


def test_token_error_text_and_roller_namespace_only(net: Devnet) -> None:
    account = Account.create()
    ws = RawWs(net.ws_url)
    try:
        # A 2023-06 identity: its timestamp is ignored, so the signature recovers another
        # key, which holds no token.
        old = AuthMsg.signed(Identity("slot0", 0, 1700000000, "v", "t" * 32), account)
        answer = ws.call("roller_subscribe", ["register", old.to_json()])
        message = answer["error"]["message"]
        assert message.startswith("failed to find corresponding token. roller name: slot0 "
                                  "roller pk: ")
        assert ws.call("rpc_modules")["result"] == {"roller": "1.0", "rpc": "1.0"}
        answer = ws.call("debug_listRollers", [])
        assert answer["error"]["code"] == -32601
    finally:
        ws.close()


def test_decode_errors_name_the_0723_go_types(net: Devnet) -> None:
    ws = RawWs(net.ws_url)
    try:
        answer = ws.call("roller_requestToken",
                         [{"message": {"name": "a", "roller_type": -1}, "signature": "0x"}])
        assert answer["error"] == {
            "code": -32602,
            "message": "invalid argument 0: json: cannot unmarshal number -1 into Go struct "
                       "field .message.roller_type of type message.ProofType"}
        answer = ws.call("roller_submitProof", [{"zkProof": {"id": "0x1", "type": 256}}])
        assert answer["error"]["message"] == (
            "invalid argument 0: json: cannot unmarshal number 256 into Go struct field "
            ".zkProof.type of type message.ProofType")
    finally:
        ws.close()


def test_submit_needs_an_assignment_not_a_registration(net: Devnet) -> None:
    r = Roller(net.ws_url)
    r.register()
    task_id = net.push_task(block_hashes=[BLOCK_02, BLOCK_03])
    task = r.next_task()
    assert task.id == task_id
    stranger = Roller(net.ws_url, "stranger")
    with pytest.raises(CoordinatorError) as info:
        stranger.submit(ProofDetail(task_id, 0, 0, good_proof(2), ""))
    assert info.value.message == "validator failure get none prover task for the proof"
    # The assigned key submits over a fresh connection without registering again.
    r.close()
    r.client = r.connect()
    r.prove(task)
    entry = task_entry(net, task_id)
    assert entry["state"] == "verified" and entry["submissions"][-1]["outcome"] == "valid"
    stranger.close()
    r.close()


def raw_register(ws: RawWs, account: Any, name: str, wire_type: int) -> None:
    first = AuthMsg.signed(Identity(name, wire_type, 0, "v", "", V07), account)
    token = ws.call("roller_requestToken", [first.to_json()])["result"]
    auth = AuthMsg.signed(Identity(name, wire_type, 0, "v", token, V07), account)
    assert "result" in ws.call("roller_subscribe", ["register", auth.to_json()])


def test_a_failure_keeps_the_key_busy_until_it_registers_again(net: Devnet) -> None:
    account = Account.create()
    ws = RawWs(net.ws_url)
    try:
        raw_register(ws, account, "raw", 1)
        first = net.push_task(block_hashes=[BLOCK_02])
        assert ws.next_notification()["params"]["result"]["id"] == first
        report = ProofMsg.signed(ProofDetail(first, 0, 1, None, "get traces failed"),
                                 account, V07)
        assert ws.call("roller_submitProof", [report.to_json()])["result"] is None
        assert task_entry(net, first)["submissions"][0]["outcome"] == "failed"
        second = net.push_task(block_hashes=[BLOCK_03])
        net.dispatch_now()
        assert task_entry(net, second)["state"] == "unassigned"  # busy: not dispatched
        raw_register(ws, account, "raw", 1)  # a second subscription: the same busy node
        net.dispatch_now()
        assert task_entry(net, second)["state"] == "unassigned"
    finally:
        ws.close()
    # A new registration (the old subscription ended) frees the key.
    ws = RawWs(net.ws_url)
    try:
        raw_register(ws, account, "raw", 1)
        assert ws.next_notification()["params"]["result"]["id"] == second
    finally:
        ws.close()


def test_the_client_registers_again_after_a_failure_report(net: Devnet) -> None:
    r = Roller(net.ws_url)
    r.register()
    first = net.push_task(block_hashes=[BLOCK_02])
    assert r.next_task().id == first
    r.submit(ProofDetail(first, 0, 1, None, "get traces failed"))
    second = net.push_task(block_hashes=[BLOCK_03])
    assert r.next_task().id == second  # no stuck key: the client registered again
    r.close()


def test_timeout_unassigns_the_task_and_a_late_proof_is_not_verified() -> None:
    with make_net(collection_time=0.5) as net:
        a = Roller(net.ws_url, "a")
        a.register()
        task_id = net.push_task(block_hashes=[BLOCK_02])
        task = a.next_task()
        wait_until(lambda: net.metrics_snapshot()["counters"].get(
            "coordinator/sessions/timeout/total") == 1, timeout=5)
        b = Roller(net.ws_url, "b")
        b.register()
        # Back to unassigned, re-sent to an idle key; `a` is still busy.
        assert b.next_task().id == task_id
        assert a.tasks.empty()
        a.prove(task)  # late: null, stored as proved, no verification recorded
        entry = task_entry(net, task_id)
        assert entry["state"] == "proved"
        assert entry["submissions"][-1]["outcome"] == "late_unverified"
        b.prove(task)
        entry = task_entry(net, task_id)
        assert entry["state"] == "verified" and entry["dispatch_count"] == 2
        assert [d["to"][0]["name"] for d in entry["dispatches"]] == ["a", "b"]
        a.close()
        b.close()


def test_a_task_out_of_attempts_is_failed_instead_of_sent() -> None:
    with make_net(collection_time=0.3, session_attempts=1) as net:
        a = Roller(net.ws_url, "a")
        a.register()
        task_id = net.push_task(block_hashes=[BLOCK_02])
        assert a.next_task().id == task_id
        b = Roller(net.ws_url, "b")
        b.register()
        wait_until(lambda: task_entry(net, task_id)["state"] == "failed", timeout=5)
        assert task_entry(net, task_id)["dispatch_count"] == 1 and b.tasks.empty()
        a.close()
        b.close()


def test_undefined_roller_type_registers_and_never_gets_work(net: Devnet) -> None:
    account = Account.create()
    ws = RawWs(net.ws_url)
    try:
        token = ws.call("roller_requestToken",
                        [AuthMsg.signed(Identity("undef", 0, 0, "v", "", V07),
                                        account).to_json()])["result"]
        auth = AuthMsg.signed(Identity("undef", 0, 0, "v", token, V07), account)
        assert "roller_type" not in auth.to_json()["message"]
        assert "result" in ws.call("roller_subscribe", ["register", auth.to_json()])
        net.push_task(block_hashes=[BLOCK_02])
        net.push_task(task_type=1, sub_proofs=[good_proof(1)])
        net.dispatch_now()
        assert {t["state"] for t in net.ledger()["tasks"]} == {"unassigned"}
    finally:
        ws.close()


@pytest.mark.integration
@pytest.mark.e2e
def test_devnet_process_serves_ws_2023_07(tmp_path: Path) -> None:
    proc, info = start_devnet_process(tmp_path, "--protocol", "ws-2023-07", "--batch",
                                      "--dispatch-interval", "0.2")
    try:
        agg = Roller(info["ws_url"], "agg", roller_type=1)
        agg.register()
        chunk = Roller(info["ws_url"], "chunk")
        chunk.register()
        for _ in range(3):
            chunk.prove(chunk.next_task(10))
        batch = agg.next_task(10)
        agg.prove(batch)

        def batch_verified() -> bool:
            ledger = requests.get(info["control_url"] + "ledger", timeout=5).json()
            assert ledger["protocol"] == "ws-2023-07"
            entry = next(t for t in ledger["tasks"] if t["id"] == batch.id)
            return bool(entry["state"] == "verified")

        wait_until(batch_verified, timeout=10)
        agg.close()
        chunk.close()
    finally:
        out = stop_devnet_process(proc)
    assert "devnet ready ws_url=ws://127.0.0.1:" in out
