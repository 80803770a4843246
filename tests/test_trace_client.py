"""TraceClient against a tiny in-test JSON-RPC HTTP stub (batch, sorting, errors, retries), and
with an injected transport, clock and sleep: what is retried, for how long (the trace budget,
the task's session window), and what the job counts of it."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import requests

from roller.config import parse_config
from roller.errors import ConfigError, TraceFetchError, TraceMismatch
from roller.ffi import Prover
from roller.ledger import TaskLedger, TaskRecord, TaskState
from roller.lifecycle import Observers
from roller.lifecycle.events import Event, TraceRetried, TracesRecovered
from roller.protocol.messages import TaskMsg
from roller.worker.job import JobContext, _fetch_traces
from roller.worker.trace_client import TRACE_METHOD, Retry, TraceClient


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
        TraceClient(l2.url, retries=3, backoff=0.01).get_traces([block_hash(1), block_hash(2)])
    assert len(l2.requests) == 4  # a node not yet synced: retried (here capped at 3)


def test_rpc_error_names_the_hash(l2: L2Stub) -> None:
    l2.traces[block_hash(1)] = trace(1)
    l2.errors[block_hash(7)] = {"code": -32000, "message": "header not found"}
    with pytest.raises(TraceFetchError, match=f"{block_hash(7)}.*header not found"):
        TraceClient(l2.url, retries=1, backoff=0.01).get_traces([block_hash(1), block_hash(7)])


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
    with pytest.raises(TraceFetchError, match=r"after 3 attempts in \d+s \(retry cap 2\)"):
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
    """Answers each POST with the next scripted response (or raises the scripted exception);
    records each call's time."""

    def __init__(self, clock: FakeClock, *answers: FakeResponse | Exception) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.times: list[float] = []

    def post(self, url: str, *, json: Any, timeout: float) -> FakeResponse:
        self.times.append(self.clock.now)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
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


def scripted(clock: FakeClock, *answers: FakeResponse | Exception, **kw: Any
             ) -> tuple[TraceClient, ScriptedTransport]:
    transport = ScriptedTransport(clock, *answers)
    kw.setdefault("jitter", lambda: 0.0)  # full steps: the waits are exact
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
    with pytest.raises(TraceFetchError, match=r"after 4 attempts in 90s \(trace budget 100s "
                       r"spent\).*HTTP 429"):
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


# -- transient failures: retried within the trace budget and the session window (issue 31) --


def rpc(*items: dict[str, Any]) -> FakeResponse:
    return FakeResponse(200, list(items))


@pytest.mark.unit
def test_a_500_burst_longer_than_three_retries_is_ridden_out_within_the_budget() -> None:
    """A 30-second L2 outage (seven 500s) used to end in `get traces failed` after the
    fourth attempt; now it is retried (1, 2, 4, 8, 15 s...) and the traces arrive."""
    clock = FakeClock()
    client, transport = scripted(clock, *[FakeResponse(500)] * 6, FakeResponse(200))
    retries: list[Retry] = []
    assert client.get_traces([block_hash(1)], on_retry=retries.append) == [trace(1)]
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]  # doubling, capped at 15 s
    assert len(transport.times) == 7
    assert [(r.attempt, r.reason, r.error) for r in retries] == [
        (n, "http_5xx", "HTTP 500") for n in range(1, 7)]
    assert [r.delay for r in retries] == clock.slept


@pytest.mark.unit
def test_a_500_burst_longer_than_the_budget_gives_up_naming_attempts_and_budget() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, *[FakeResponse(500)] * 50, budget_seconds=60)
    with pytest.raises(TraceFetchError) as err:
        client.get_traces([block_hash(1)])
    # Waits 1+2+4+8+15+15 = 45 s, then the last one ends at the deadline (15 s): one more
    # attempt there, and no wait past it.
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert len(transport.times) == 8
    assert str(err.value) == (f"trace fetch failed after 8 attempts in 60s (trace budget 60s "
                              f"spent) for blocks {block_hash(1)}: HTTP 500")


@pytest.mark.unit
def test_the_session_window_bounds_the_retries_before_the_budget() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, *[FakeResponse(503)] * 50)  # budget 300 s
    with pytest.raises(TraceFetchError, match=r"after 5 attempts in 10s \(session window "
                                              r"closes\).*HTTP 503"):
        client.get_traces([block_hash(1)], seconds_left=10)
    assert clock.slept == [1.0, 2.0, 4.0, 3.0]  # the last wait ends at the window's end
    assert transport.times[-1] == 1010.0


@pytest.mark.unit
def test_a_window_already_closed_allows_one_attempt_and_no_retry() -> None:
    clock = FakeClock()
    client, transport = scripted(clock, FakeResponse(500), FakeResponse(200))
    with pytest.raises(TraceFetchError, match=r"after 1 attempts in 0s \(session window"):
        client.get_traces([block_hash(1)], seconds_left=-5)
    assert clock.slept == [] and len(transport.times) == 1


@pytest.mark.unit
def test_a_window_longer_than_the_budget_leaves_the_budget_in_charge() -> None:
    clock = FakeClock()
    client, _ = scripted(clock, *[FakeResponse(500)] * 50, budget_seconds=30)
    with pytest.raises(TraceFetchError, match=r"in 30s \(trace budget 30s spent\)"):
        client.get_traces([block_hash(1)], seconds_left=10_000)


@pytest.mark.unit
@pytest.mark.parametrize(("failure", "reason"), [
    (requests.ConnectionError("connection refused"), "connection"),
    (requests.ConnectTimeout("connect timed out"), "timeout"),
    (requests.ReadTimeout("read timed out"), "timeout"),
    (FakeResponse(502), "http_5xx"),
    (rpc({"jsonrpc": "2.0", "id": 0, "error": {"code": -32000, "message": "header not found"}}),
     "rpc_error"),
    (rpc({"jsonrpc": "2.0", "id": 0, "result": None}), "null_trace"),
])
def test_every_transient_failure_is_retried_past_three_attempts(
        failure: FakeResponse | Exception, reason: str) -> None:
    clock = FakeClock()
    client, transport = scripted(clock, *[failure] * 5, FakeResponse(200))
    retries: list[Retry] = []
    assert client.get_traces([block_hash(1)], on_retry=retries.append) == [trace(1)]
    assert [r.reason for r in retries] == [reason] * 5
    assert len(transport.times) == 6


@pytest.mark.unit
@pytest.mark.parametrize(("answer", "match"), [
    (FakeResponse(400), "HTTP 400"),
    (FakeResponse(404), "HTTP 404"),
    (FakeResponse(200, {"jsonrpc": "2.0", "error": {"code": -32600, "message": "no"}}),
     "refused the batch"),
    (rpc({"jsonrpc": "2.0", "id": 0, "error": {"code": -32602, "message": "invalid argument"}}),
     "invalid argument"),
    (rpc({"jsonrpc": "2.0", "id": 0, "result": {"header": {"number": 7}}}), "hex header.number"),
    (rpc({"jsonrpc": "2.0", "id": 0, "result": trace(2)}), "another block"),
])
def test_deterministic_answers_are_final_at_once(answer: FakeResponse, match: str) -> None:
    clock = FakeClock()
    client, transport = scripted(clock, answer, FakeResponse(200))
    retries: list[Retry] = []
    with pytest.raises(TraceFetchError, match=match):
        client.get_traces([block_hash(1)], on_retry=retries.append)
    assert len(transport.times) == 1 and clock.slept == [] and retries == []


@pytest.mark.unit
def test_jitter_shortens_each_wait_by_up_to_half() -> None:
    clock = FakeClock()
    client, _ = scripted(clock, *[FakeResponse(500)] * 6, FakeResponse(200),
                         jitter=lambda: 0.999)
    client.get_traces([block_hash(1)])
    steps = [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert all(step / 2 < slept <= step for step, slept in zip(steps, clock.slept, strict=True))
    assert clock.slept != steps


@pytest.mark.unit
def test_429_waits_do_not_grow_the_transient_backoff() -> None:
    clock = FakeClock()
    client, _ = scripted(clock, FakeResponse(429, headers={"Retry-After": "3"}),
                         FakeResponse(500), FakeResponse(429), FakeResponse(500),
                         FakeResponse(200))
    retries: list[Retry] = []
    assert client.get_traces([block_hash(1)], on_retry=retries.append) == [trace(1)]
    assert clock.slept == [3.0, 1.0, 2.0, 2.0]  # 429: its own; 500: 1, 2
    assert [r.reason for r in retries] == ["rate_limited", "http_5xx", "rate_limited",
                                           "http_5xx"]


@pytest.mark.unit
def test_without_a_listener_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    client, _ = scripted(clock, FakeResponse(500), FakeResponse(200))
    with caplog.at_level(logging.WARNING, logger="roller.worker.trace_client"):
        client.get_traces([block_hash(1)])
    assert "trace fetch retry attempt=1 delay=1.0s reason=http_5xx error=\"HTTP 500\"" \
        in caplog.text
    assert "rpc.example" not in caplog.text


# -- the job: its session window bounds the fetch; each retry, and each save, is an event ----


def job_context(tmp_path: Path, traces: TraceClient, seen: list[Event]) -> JobContext:
    cfg = parse_config({"roller_name": "r", "keystore_path": "k.json",
                        "coordinator_url": "ws://127.0.0.1:1", "trace_endpoint": "http://x",
                        "session_window_minutes": 10}, tmp_path, env={})
    return JobContext(cfg=cfg, ledger=cast(TaskLedger, None), prover=cast(Prover, None),
                      traces=traces, worker="w", events=Observers([seen.append]))


def chunk_record(received_at: float) -> TaskRecord:
    task = TaskMsg(id="0x" + "aa" * 32, type=0, block_hashes=(block_hash(1),), sub_proofs=())
    return TaskRecord(slot="s0", task=task, received_at=received_at, state=TaskState.PROVING,
                      assignment=1, attempts=1, total_attempts=1, proof=None, outcome="",
                      prove_seconds=None, worker="w", queue="gpu0", updated_at=received_at)


@pytest.mark.unit
def test_the_job_counts_retries_and_the_recovered_fetch(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    client, _ = scripted(clock, FakeResponse(500), FakeResponse(500), FakeResponse(200))
    seen: list[Event] = []
    ctx = job_context(tmp_path, client, seen)
    with caplog.at_level(logging.INFO, logger="roller.worker.job"):
        traces_json = _fetch_traces(ctx, chunk_record(time.time()))
    assert json.loads(traces_json) == [trace(1)]
    assert seen == [TraceRetried("s0", "http_5xx"), TraceRetried("s0", "http_5xx"),
                    TracesRecovered("s0", 2)]
    task_id = "0x" + "aa" * 32
    assert f"trace fetch retry task_id={task_id} slot=s0 attempt=1 delay=1.0s" in caplog.text
    assert f"traces fetched after retries task_id={task_id} slot=s0 retries=2" in caplog.text


@pytest.mark.unit
def test_the_job_stops_retrying_at_its_session_window(tmp_path: Path) -> None:
    clock = FakeClock()
    client, transport = scripted(clock, *[FakeResponse(500)] * 50)  # budget 300 s
    seen: list[Event] = []
    ctx = job_context(tmp_path, client, seen)
    # Received 9 min 50 s ago: 10 s of the 10 min window left, well inside the budget.
    with pytest.raises(TraceFetchError, match=r"in 10s \(session window closes\)"):
        _fetch_traces(ctx, chunk_record(time.time() - 590))
    assert sum(clock.slept) == pytest.approx(10, abs=0.5)
    assert not any(isinstance(e, TracesRecovered) for e in seen)
    assert len(seen) == len(transport.times) - 1  # one TraceRetried per retry


@pytest.mark.unit
def test_a_fetch_without_retries_emits_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    client, _ = scripted(clock, FakeResponse(200))
    seen: list[Event] = []
    _fetch_traces(job_context(tmp_path, client, seen), chunk_record(time.time()))
    assert seen == []


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
