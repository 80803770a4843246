"""Wire-level behaviour of the devnet coordinator: go-ethereum rpc texts and framing (spec 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import websocket
from devnet_helpers import BLOCK_02, TRACES, RawWs, auth, register_raw
from eth_account import Account

from roller.devnet import Devnet


@pytest.fixture
def net() -> Iterator[Devnet]:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in", trace_dir=TRACES,
                chunk_tasks=False, dispatch_interval=0.1, ping_idle=0.3) as devnet:
        yield devnet


@pytest.fixture
def ws(net: Devnet) -> Iterator[RawWs]:
    conn = RawWs(net.ws_url)
    yield conn
    conn.close()


def err(answer: dict) -> tuple[int, str]:
    return answer["error"]["code"], answer["error"]["message"]


def test_frames_are_compact_json_with_newline(ws: RawWs) -> None:
    answer = ws.call("rpc_modules")
    assert answer["result"]["roller"] == "1.0"
    assert ws.frames[-1].endswith("}\n") and ", " not in ws.frames[-1]


def test_method_and_param_errors(ws: RawWs) -> None:
    a = auth(Account.create()).to_json()
    assert err(ws.call("roller_foo", [])) == (
        -32601, "the method roller_foo does not exist/is not available")
    assert err(ws.call("roller_register", [a])) == (
        -32601, "the method roller_register does not exist/is not available")
    assert err(ws.call("roller_subscribe", ["foo", a])) == (
        -32601, 'no "foo" subscription in roller namespace')
    assert err(ws.call("roller_requestToken", [a, a])) == (
        -32602, "too many arguments, want at most 1")
    assert err(ws.call("roller_requestToken")) == (-32000, "method handler crashed")
    bad = json.loads(json.dumps(a))
    bad["message"]["timestamp"] = -1
    assert err(ws.call("roller_requestToken", [bad])) == (
        -32602, "invalid argument 0: json: cannot unmarshal number -1 into Go struct field "
                ".message.timestamp of type uint32")
    assert err(ws.call("roller_requestToken", {"a": 1})) == (-32602, "non-array args")


def test_case_insensitive_members(ws: RawWs) -> None:
    account = Account.create()
    normal = ws.call("roller_requestToken", [auth(account).to_json()])["result"]
    a = auth(account).to_json()
    shouted = {"MESSAGE": {k.upper(): v for k, v in a["message"].items()},
               "Signature": a["signature"]}
    assert ws.call("roller_requestToken", [shouted])["result"] == normal


def test_batches(ws: RawWs) -> None:
    ws.send_text("[]")
    assert ws.recv() == {"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32600, "message": "empty batch"}}
    ws.send_text(json.dumps([{"jsonrpc": "2.0", "id": "x", "method": "rpc_modules"},
                             {"jsonrpc": "2.0", "method": "rpc_modules"},
                             {"jsonrpc": "2.0", "id": 7, "method": "nope_x"}]))
    answers = ws.recv()
    assert [a["id"] for a in answers] == ["x", 7]


def test_invalid_json_answers_then_closes(ws: RawWs) -> None:
    ws.send_text("{not json")
    answer = ws.recv()
    assert answer["id"] is None and answer["error"]["code"] == -32700
    with pytest.raises((websocket.WebSocketException, OSError)):
        ws.recv()


def test_unsubscribe_twice(net: Devnet, ws: RawWs) -> None:
    sub_id = register_raw(ws, Account.create())
    assert ws.call("roller_unsubscribe", [sub_id])["result"] is True
    assert err(ws.call("roller_unsubscribe", [sub_id])) == (-32000, "subscription not found")


def test_notification_after_subscribe_answer(net: Devnet, ws: RawWs) -> None:
    net.push_task(block_hashes=[BLOCK_02])
    register_raw(ws, Account.create())
    note = ws.next_notification()
    assert note["method"] == "roller_subscription"
    assert note["params"]["result"]["block_hashes"] == [BLOCK_02]


def test_origin_check(net: Devnet) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(net.ws_url, origin="http://evil.example", timeout=5)
    assert info.value.status_code == 403
    ok = websocket.create_connection(net.ws_url, origin="http://localhost:1234", timeout=5)
    ok.close()


def test_server_pings_after_idle(ws: RawWs) -> None:
    opcode, _ = ws.ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PING
