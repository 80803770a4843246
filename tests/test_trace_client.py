"""TraceClient against a tiny in-test JSON-RPC HTTP stub (batch, sorting, errors, retries)."""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from roller.errors import ConfigError, TraceFetchError, TraceMismatch
from roller.worker.trace_client import TRACE_METHOD, TraceClient


def block_hash(n: int) -> str:
    return "0x" + f"{n:02x}" * 32


def trace(n: int) -> dict[str, Any]:
    return {"chainID": 222222,
            "header": {"number": hex(n), "hash": block_hash(n), "parentHash": block_hash(n - 1)},
            "transactions": [], "unknownMember": {"kept": True}}


class L2Stub:
    """Serves traces by hash; records every request body; can fail the first N requests."""

    def __init__(self) -> None:
        self.traces: dict[str, Any] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.requests: list[Any] = []
        self.fail_first = 0
        self.status_override: int | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                if stub.fail_first > 0:
                    stub.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if stub.status_override is not None:
                    self.send_response(stub.status_override)
                    self.end_headers()
                    return
                answers = [stub.answer(req) for req in body]
                random.Random(1).shuffle(answers)  # batch answers may come in any order
                data = json.dumps(answers).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        key = req["params"][0]
        if key in self.errors:
            return {"jsonrpc": "2.0", "id": req["id"], "error": self.errors[key]}
        return {"jsonrpc": "2.0", "id": req["id"], "result": self.traces.get(key)}


@pytest.fixture
def l2() -> Iterator[L2Stub]:
    stub = L2Stub()
    thread = threading.Thread(target=stub.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


def test_one_batch_sorted_by_number(l2: L2Stub) -> None:
    for n in (3, 4, 1, 2):
        l2.traces[block_hash(n)] = trace(n)
    hashes = [block_hash(n) for n in (4, 3, 1, 2)]
    traces = TraceClient(l2.url).get_traces(hashes)
    assert [t["header"]["number"] for t in traces] == ["0x1", "0x2", "0x3", "0x4"]
    assert traces[0]["unknownMember"] == {"kept": True}  # opaque pass-through
    assert len(l2.requests) == 1
    batch = l2.requests[0]
    assert [r["method"] for r in batch] == [TRACE_METHOD] * 4
    assert [r["params"] for r in batch] == [[h] for h in hashes]
    assert all(r["jsonrpc"] == "2.0" for r in batch)


def test_hashes_sent_lowercase(l2: L2Stub) -> None:
    l2.traces[block_hash(0xAB)] = trace(0xAB)
    TraceClient(l2.url).get_traces(["0X" + "AB" * 32])
    assert l2.requests[0][0]["params"] == ["0x" + "ab" * 32]


def test_traces_json_is_compact_array(l2: L2Stub) -> None:
    for n in (5, 4):
        l2.traces[block_hash(n)] = trace(n)
    text = TraceClient(l2.url).get_traces_json([block_hash(5), block_hash(4)])
    assert " " not in text and "\n" not in text
    assert json.loads(text) == [trace(4), trace(5)]


def test_empty_list_makes_no_request(l2: L2Stub) -> None:
    assert TraceClient(l2.url).get_traces([]) == []
    assert l2.requests == []


def test_null_result_names_the_hash(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    with pytest.raises(TraceFetchError, match=block_hash(2)):
        TraceClient(l2.url, backoff=0.01).get_traces([block_hash(1), block_hash(2)])
    assert len(l2.requests) == 4  # a node not yet synced: retried, bounded


def test_rpc_error_names_the_hash(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.errors[block_hash(7)] = {"code": -32000, "message": "header not found"}
    with pytest.raises(TraceFetchError, match=f"{block_hash(7)}.*header not found"):
        TraceClient(l2.url, backoff=0.01).get_traces([block_hash(1), block_hash(7)])


@pytest.mark.parametrize("bad", [[], "x", {"header": None}, {"header": {"number": 5}},
                                 {"header": {"number": "12"}}, {"header": {"number": "0x1_0"}}])
def test_malformed_trace_names_the_hash(l2: L2Stub, bad: Any) -> None:
    l2.traces[block_hash(9)] = bad
    with pytest.raises(TraceFetchError, match=block_hash(9)):
        TraceClient(l2.url).get_traces([block_hash(9)])


def test_invalid_hash_is_refused_before_any_request(l2: L2Stub) -> None:
    with pytest.raises(TraceFetchError, match="0x12"):
        TraceClient(l2.url).get_traces(["0x12"])
    assert l2.requests == []


def test_retries_5xx_then_succeeds(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.fail_first = 2
    traces = TraceClient(l2.url, retries=3, backoff=0.01).get_traces([block_hash(1)])
    assert traces == [trace(1)]
    assert len(l2.requests) == 3


def test_retries_are_bounded(l2: L2Stub) -> None:
    l2.fail_first = 100
    with pytest.raises(TraceFetchError, match="after 3 attempts"):
        TraceClient(l2.url, retries=2, backoff=0.01).get_traces([block_hash(1)])
    assert len(l2.requests) == 3


def test_4xx_is_not_retried(l2: L2Stub) -> None:
    l2.status_override = 404
    with pytest.raises(TraceFetchError, match="HTTP 404"):
        TraceClient(l2.url, retries=3, backoff=0.01).get_traces([block_hash(1)])
    assert len(l2.requests) == 1


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = TraceClient(f"http://127.0.0.1:{port}/", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(TraceFetchError, match="after 2 attempts"):
        client.get_traces([block_hash(1)])


def test_non_http_endpoint_is_config_error() -> None:
    with pytest.raises(ConfigError):
        TraceClient("ws://127.0.0.1:8546")


# -- checked traces: every answer is the block asked for -------------------------------------


def test_trace_of_another_block_is_a_mismatch_naming_it(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.traces[block_hash(2)] = trace(5)  # the node answers block 5 for block 2's hash
    with pytest.raises(TraceMismatch, match=f"block {block_hash(2)}: .*another block") as err:
        TraceClient(l2.url).get_traces([block_hash(1), block_hash(2)])
    assert err.value.block == block_hash(2)
    assert len(l2.requests) == 1  # a wrong answer is final, not retried


def test_broken_parent_chain_is_a_mismatch_naming_the_block(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.traces[block_hash(2)] = bad = trace(2)
    bad["header"]["parentHash"] = block_hash(0x77)
    with pytest.raises(TraceMismatch, match=f"block {block_hash(2)}: header.parentHash"):
        TraceClient(l2.url).get_traces([block_hash(1), block_hash(2)])


def test_gap_in_numbers_is_a_mismatch(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.traces[block_hash(3)] = trace(3)
    with pytest.raises(TraceMismatch, match=f"block {block_hash(3)}: block number 3"):
        TraceClient(l2.url).get_traces([block_hash(1), block_hash(3)])


def test_chain_id_must_be_the_configured_one(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    with pytest.raises(TraceMismatch, match="chain 222222, expected chain 534352"):
        TraceClient(l2.url, chain_id=534352).get_traces([block_hash(1)])
    l2.traces[block_hash(2)] = other = trace(2)
    other["chainID"] = 1
    with pytest.raises(TraceMismatch, match=f"block {block_hash(2)}: trace of chain 1"):
        TraceClient(l2.url).get_traces([block_hash(1), block_hash(2)])


# -- rate limits (issue 22 item 5), with an injected transport and clock ---------------------


class FakeResponse:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status_code = status
        self.headers = headers or {}
        self._body = body

    def json(self) -> Any:
        return self._body


class ScriptedTransport:
    """Answers each POST with the next scripted response; records each call's time."""

    def __init__(self, clock: FakeClock, *answers: FakeResponse) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.times: list[float] = []

    def post(self, url: str, *, json: Any, timeout: float) -> FakeResponse:
        self.times.append(self.clock.now)
        answer = self.answers.pop(0)
        if answer.status_code == 200 and answer._body is None:
            return FakeResponse(200, [{"jsonrpc": "2.0", "id": r["id"],
                                       "result": trace(int(r["params"][0][2:4], 16))}
                                      for r in json])
        return answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def scripted(clock: FakeClock, *answers: FakeResponse, **kw: Any) -> tuple[TraceClient,
                                                                           ScriptedTransport]:
    transport = ScriptedTransport(clock, *answers)
    client = TraceClient("https://rpc.example/v3/" + "k" * 32, transport=transport,
                         clock=clock, sleep=clock.sleep, **kw)
    return client, transport


@pytest.mark.unit
def test_429_with_retry_after_is_waited_then_the_trace_arrives() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, FakeResponse(429, headers={"Retry-After": "7"}),
                                 FakeResponse(200), retries=0)
    assert client.get_traces([block_hash(1)]) == [trace(1)]
    assert clock.slept == [7.0]  # the node's own wait, not counted against retries=0
    assert transport.times == [1000.0, 1007.0]


@pytest.mark.unit
def test_429_without_retry_after_backs_off_exponentially() -> None:
    clock = FakeClock()
    client, _ = scripted(clock, *[FakeResponse(429)] * 3, FakeResponse(200), backoff=1.0,
                         retries=0)
    assert client.get_traces([block_hash(1)]) == [trace(1)]
    assert clock.slept == [1.0, 2.0, 4.0]


@pytest.mark.unit
def test_429_http_date_retry_after() -> None:
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    clock = FakeClock()
    client, _ = scripted(clock, FakeResponse(429, headers={"Retry-After": when}),
                         FakeResponse(200))
    assert client.get_traces([block_hash(1)]) == [trace(1)]
    assert len(clock.slept) == 1 and 15 <= clock.slept[0] <= 20


@pytest.mark.unit
def test_429_is_reported_once_the_trace_budget_is_spent() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, *[FakeResponse(429, headers={"Retry-After": "30"})]
                                 * 10, budget_seconds=100)
    with pytest.raises(TraceFetchError, match=r"after 4 attempts \(trace budget 100s spent\)"
                       r".*HTTP 429"):
        client.get_traces([block_hash(1)])
    assert clock.slept == [30.0, 30.0, 30.0]  # a fourth wait would pass the budget
    assert len(transport.times) == 4


@pytest.mark.unit
def test_retry_after_beyond_the_budget_reports_at_once() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, FakeResponse(429, headers={"Retry-After": "9999"}),
                                 budget_seconds=20)
    with pytest.raises(TraceFetchError, match="trace budget 20s spent"):
        client.get_traces([block_hash(1)])
    assert clock.slept == [] and len(transport.times) == 1


# -- no credential of the endpoint in any error text ------------------------------------------


@pytest.mark.unit
def test_endpoint_credentials_never_reach_the_error_text() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "f00dfeed" * 4
    url = f"http://user:pa55word@127.0.0.1:{port}/v3/{key}?apikey=q5ecret"
    client = TraceClient(url, retries=1, backoff=0.01, timeout=2)
    with pytest.raises(TraceFetchError) as err:
        client.get_traces([block_hash(1)])
    text = f"{err.value} {err.value!r} {client!r}"
    for secret in (key, "pa55word", "q5ecret", "user:"):
        assert secret not in text
    assert f"127.0.0.1:{port}" in repr(client)
    with pytest.raises(ConfigError) as cfg_err:
        TraceClient(f"ws://u:pa55word@127.0.0.1/v3/{key}")
    assert key not in str(cfg_err.value) and "pa55word" not in str(cfg_err.value)
