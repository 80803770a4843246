"""The protocol client against the devnet coordinator over real WebSocket (spec 2, 5)."""

from __future__ import annotations

import dataclasses
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from devnet_helpers import (
    BLOCK_02,
    BLOCK_03,
    RawWs,
    auth,
    good_proof,
    high_s,
    make_devnet,
    proof_msg,
    v_plus_27,
    wait_until,
)
from eth_account import Account
from eth_account.signers.local import LocalAccount

from roller.devnet import Devnet
from roller.errors import CoordinatorError
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.messages import AuthMsg, ProofMsg, TaskMsg

make_net = make_devnet
NO_TASK = "the roller or session id doesn't exist, pubkey: {pk}, ID: {id}"


def pk_of(account: LocalAccount) -> str:
    return AuthMsg.signed(auth(account).identity, account).recover_pk()


@pytest.fixture
def net() -> Iterator[Devnet]:
    with make_net() as devnet:
        yield devnet


class Roller:
    """One identity driven through the real CoordinatorClient."""

    def __init__(self, net: Devnet, name: str = "slot0", roller_type: int = 0) -> None:
        self.account = Account.create()
        self.net = net
        self.name = name
        self.roller_type = roller_type
        self.tasks: queue.Queue[TaskMsg] = queue.Queue()
        self.client = CoordinatorClient(net.ws_url, call_timeout=5, submit_timeout=20)
        self.client.connect()

    @property
    def pk(self) -> str:
        return pk_of(self.account)

    def register(self) -> str:
        return self.client.register(self.account, self.name, self.roller_type, "v-test",
                                    self.tasks.put)

    def next_task(self, timeout: float = 5) -> TaskMsg:
        return self.tasks.get(timeout=timeout)

    def submit(self, task_id: str, **kwargs: Any) -> None:
        task = self.net.book.get(task_id)
        if task is not None and "proof" not in kwargs and kwargs.get("status", 0) == 0:
            # An honest stand-in proof carries the task's block count (the stand-in checks it).
            blocks = (sum(p.block_count for p in task.sub_proofs) if task.type == 1
                      else len(task.block_hashes))
            kwargs["proof"] = good_proof(blocks)
        self.client.submit_proof(proof_msg(self.account, task_id, **kwargs))

    def close(self) -> None:
        self.client.close()


def coordinator_error(fn: Any, *args: Any) -> CoordinatorError:
    with pytest.raises(CoordinatorError) as info:
        fn(*args)
    return info.value


def task_entry(net: Devnet, task_id: str) -> dict[str, Any]:
    return next(t for t in net.ledger()["tasks"] if t["id"] == task_id)


# -- tokens and registration ---------------------------------------------------------------


def test_token_same_within_ttl_new_after_expiry() -> None:
    now = [0.0]
    with make_net(token_ttl=60) as net:
        net.tokens.clock = lambda: now[0]  # the token TTL runs on a clock the test steps
        r = Roller(net)
        first = r.client.request_token(auth(r.account))
        assert len(first) == 32 and int(first, 16) >= 0
        now[0] = 59.9
        assert r.client.request_token(auth(r.account)) == first
        now[0] = 60.0
        assert r.client.request_token(auth(r.account)) != first
        r.close()


def test_register_task_notification_submit_accepted(net: Devnet) -> None:
    r = Roller(net)
    sub_id = r.register()
    assert sub_id.startswith("0x") and 3 <= len(sub_id) <= 34
    task_id = net.push_task(block_hashes=[BLOCK_02, BLOCK_03])
    task = r.next_task()
    assert task.id == task_id and set(task.block_hashes) == {BLOCK_02, BLOCK_03}
    r.submit(task.id)
    entry = task_entry(net, task_id)
    assert entry["state"] == "verified"
    assert entry["dispatches"][0]["to"] == [{"pk": r.pk, "name": "slot0"}]
    assert entry["submissions"][0]["outcome"] == "valid"
    # The key is idle again: the next task goes to it.
    second = net.push_task(block_hashes=[BLOCK_02])
    assert r.next_task().id == second
    r.close()


def test_unknown_token_and_token_reuse_rejected(net: Devnet) -> None:
    r = Roller(net)
    account, pk = r.account, r.pk
    ws = RawWs(net.ws_url)
    wrong = ws.call("roller_subscribe", ["register", auth(account, "s", "00" * 16).to_json()])
    text = f"failed to find corresponding token. roller name: s. roller pk: {pk}"
    assert wrong["error"] == {"code": -32000, "message": text}
    token = ws.call("roller_requestToken", [auth(account, "s").to_json()])["result"]
    ok = ws.call("roller_subscribe", ["register", auth(account, "s", token).to_json()])
    assert "result" in ok
    other = RawWs(net.ws_url)
    reused = other.call("roller_subscribe", ["register", auth(account, "s", token).to_json()])
    assert reused["error"]["message"] == text
    ws.close()
    other.close()
    r.close()


@pytest.mark.parametrize("mutate", [
    lambda sig: "0x1234",
    v_plus_27,
    high_s,
    lambda sig: sig[:-2] + "04",
])
def test_bad_signatures_rejected_everywhere(net: Devnet, mutate: Any) -> None:
    r = Roller(net)
    good = auth(r.account)
    bad = dataclasses.replace(good, signature=mutate(good.signature))
    err = coordinator_error(r.client.request_token, bad)
    assert (err.code, err.message) == (-32000, "signature verification failed")
    ws = RawWs(net.ws_url)
    token = ws.call("roller_requestToken", [good.to_json()])["result"]
    signed = auth(r.account, token=token)
    answer = ws.call("roller_subscribe", [
        "register", dataclasses.replace(signed, signature=mutate(signed.signature)).to_json()])
    assert answer["error"] == {"code": -32000, "message": "signature verification failed"}
    proof = proof_msg(r.account, "0x01")
    bad_proof = ProofMsg(proof.detail, mutate(proof.signature))
    err = coordinator_error(r.client.submit_proof, bad_proof)
    assert (err.code, err.message) == (-32000, "auth signature verify fail")
    ws.close()
    r.close()


def test_signature_hex_is_lenient_like_go(net: Devnet) -> None:
    r = Roller(net)
    good = auth(r.account)
    token = r.client.request_token(good)
    upper = dataclasses.replace(good, signature="0X" + good.signature[2:].upper())
    assert r.client.request_token(upper) == token
    bare = dataclasses.replace(good, signature=good.signature[2:])
    assert r.client.request_token(bare) == token
    r.close()


# -- submit checks -------------------------------------------------------------------------


def test_wrong_key_and_unregistered_key_cannot_submit(net: Devnet) -> None:
    a, b = Roller(net, "a"), Roller(net, "b")
    a.register()
    task_id = net.push_task(block_hashes=[BLOCK_02])
    assert a.next_task().id == task_id
    b.register()
    err = coordinator_error(b.submit, task_id)
    assert err.message == NO_TASK.format(pk=b.pk, id=task_id)
    stranger = Roller(net, "c")
    err = coordinator_error(stranger.submit, task_id)
    assert err.message == NO_TASK.format(pk=stranger.pk, id=task_id)
    a.submit(task_id)
    rejected = [s for s in task_entry(net, task_id)["submissions"] if s["outcome"] == "rejected"]
    assert {s["pk"] for s in rejected} == {b.pk, stranger.pk}
    for r in (a, b, stranger):
        r.close()


def test_failure_status_and_invalid_proof_recorded(net: Devnet) -> None:
    r = Roller(net)
    r.register()
    failed = net.push_task(block_hashes=[BLOCK_02])
    assert r.next_task().id == failed
    r.submit(failed, status=1, error="get traces failed")
    invalid = net.push_task(block_hashes=[BLOCK_03])
    assert r.next_task().id == invalid
    bad = dataclasses.replace(proof_msg(r.account, invalid).detail.proof,
                              proof=b"this is a invalid proof")
    r.submit(invalid, proof=bad)
    ledger = {t["id"]: t for t in net.ledger()["tasks"]}
    assert ledger[failed]["state"] == "failed"
    assert ledger[failed]["submissions"][0]["outcome"] == "failed"
    assert ledger[failed]["submissions"][0]["error"] == "get traces failed"
    assert ledger[invalid]["state"] == "failed"
    assert ledger[invalid]["submissions"][0]["valid"] is False
    r.close()


def test_submit_after_disconnect_needs_reregistration(net: Devnet) -> None:
    r = Roller(net)
    r.register()
    task_id = net.push_task(block_hashes=[BLOCK_02])
    assert r.next_task().id == task_id
    r.close()
    wait_until(lambda: not net.ledger()["rollers"])
    again = Roller(net)
    again.account = r.account
    err = coordinator_error(again.submit, task_id)
    assert err.message == NO_TASK.format(pk=r.pk, id=task_id)
    again.register()  # reload restores the task id; the task is not re-sent
    again.submit(task_id)
    assert task_entry(net, task_id)["state"] == "verified"
    assert again.tasks.empty()
    again.close()


def test_restart_keeps_sessions_drops_pool(net: Devnet) -> None:
    r = Roller(net)
    r.register()
    task_id = net.push_task(block_hashes=[BLOCK_02])
    assert r.next_task().id == task_id
    net.restart()
    assert r.client.wait_disconnected(5)
    assert net.ledger()["rollers"] == [] and len(net.ledger()["sessions"]) == 1
    again = Roller(net)
    again.account = r.account
    again.register()
    again.submit(task_id)
    assert task_entry(net, task_id)["state"] == "verified"
    again.close()


# -- sessions: timeout and re-dispatch -------------------------------------------------------


def test_timeout_redispatches_to_another_idle_roller() -> None:
    with make_net(collection_time=0.5) as net:
        a = Roller(net, "a")
        a.register()
        task_id = net.push_task(block_hashes=[BLOCK_02])
        assert a.next_task().id == task_id
        b = Roller(net, "b")
        b.register()
        assert b.next_task(timeout=5).id == task_id
        err = coordinator_error(a.submit, task_id)
        assert err.message == NO_TASK.format(pk=a.pk, id=task_id)
        b.submit(task_id)
        entry = task_entry(net, task_id)
        assert entry["dispatch_count"] == 2 and entry["state"] == "verified"
        assert [d["to"][0]["name"] for d in entry["dispatches"]] == ["a", "b"]
        a.close()
        b.close()


def test_timeout_with_single_roller_fails_task() -> None:
    with make_net(collection_time=0.3) as net:
        r = Roller(net)
        r.register()
        task_id = net.push_task(block_hashes=[BLOCK_02])
        assert r.next_task().id == task_id
        wait_until(lambda: task_entry(net, task_id)["state"] == "failed", timeout=5)
        assert task_entry(net, task_id)["dispatch_count"] == 1
        assert net.metrics_snapshot()["counters"]["coordinator/sessions/timeout/total"] == 1
        r.close()


def test_type_matching_and_batch_task_from_verified_chunks() -> None:
    with make_net(chunk_tasks=True, chunk_size=2, batch=True) as net:
        agg = Roller(net, "agg", roller_type=1)
        agg.register()
        basic = Roller(net, "basic")
        basic.register()
        chunk_ids = []
        for _ in range(3):  # chains of the fixture set: [02, 03], [04], [05]
            task = basic.next_task()
            assert task.type == 0
            chunk_ids.append(task.id)
            basic.submit(task.id)
        batch = agg.next_task()
        assert batch.type == 1 and len(batch.sub_proofs) == 1
        agg.submit(batch.id, task_type=1)
        ledger = {t["id"]: t for t in net.ledger()["tasks"]}
        assert ledger[batch.id]["state"] == "verified" and ledger[batch.id]["source"] == "batch"
        agg.close()
        basic.close()


def test_metrics_per_roller(net: Devnet) -> None:
    r = Roller(net)
    r.register()
    task_id = net.push_task(block_hashes=[BLOCK_02])
    r.next_task()
    r.submit(task_id)
    text = net.metrics_text().decode()
    assert f"roller_proofs_last_assigned_timestamp_{r.pk}" in text
    assert f"roller_proofs_verified_success_time_{r.pk}_count 1.0" in text
    assert "coordinator_proofs_received_total 1.0" in text
    r.close()


def test_control_api_push_drop_and_outage(net: Devnet) -> None:
    import requests

    r = Roller(net)
    r.register()
    pushed = requests.post(net.control_url + "push_task",
                           json={"type": 0, "block_hashes": [BLOCK_02]}, timeout=5).json()
    assert r.next_task().id == pushed["id"]
    dropped = requests.post(net.control_url + "drop_connections", json={"pk": r.pk}, timeout=5)
    assert dropped.json() == {"dropped": 1}
    assert r.client.wait_disconnected(5)
    assert requests.post(net.control_url + "stop_for", json={"seconds": 0.5},
                         timeout=5).status_code == 200
    assert net.ledger()["coordinator_up"] is False
    wait_until(lambda: net.ledger()["coordinator_up"], timeout=5)
    again = Roller(net)
    again.account = r.account
    again.register()
    again.submit(pushed["id"])
    assert requests.get(net.control_url + "nope", timeout=5).status_code == 404
    assert "coordinator_sessions_success_total 1.0" in requests.get(
        net.control_url + "metrics", timeout=5).text
    again.close()
