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

from roller.errors import ConfigError, TraceFetchError
from roller.worker.trace_client import TRACE_METHOD, TraceClient


def block_hash(n: int) -> str:
    return "0x" + f"{n:02x}" * 32


def trace(n: int) -> dict[str, Any]:
    return {"chainID": 222222, "header": {"number": hex(n), "hash": block_hash(n)},
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
    for n in (3, 10, 1, 2):
        l2.traces[block_hash(n)] = trace(n)
    hashes = [block_hash(n) for n in (10, 3, 1, 2)]
    traces = TraceClient(l2.url).get_traces(hashes)
    assert [t["header"]["number"] for t in traces] == ["0x1", "0x2", "0x3", "0xa"]
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
