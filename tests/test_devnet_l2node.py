"""The trace client against the devnet L2 node: batches, sorting, unknown hashes, faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from devnet_helpers import BLOCK_02, BLOCK_03, TRACES, wait_until

from roller.devnet import Devnet
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir
from roller.errors import TraceFetchError
from roller.worker.trace_client import TraceClient

UNKNOWN = "0x" + "ab" * 32


@pytest.fixture
def net() -> Iterator[Devnet]:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                trace_dir=TRACES, chunk_tasks=False) as devnet:
        yield devnet


def client(net: Devnet) -> TraceClient:
    return TraceClient(net.l2_url, timeout=2, retries=0, backoff=0.01)


def test_batch_fetch_sorted_by_number(net: Devnet) -> None:
    traces = client(net).get_traces([BLOCK_03, BLOCK_02])
    assert [int(t["header"]["number"], 16) for t in traces] == [2, 3]
    assert traces[0]["header"]["hash"] == BLOCK_02


def test_unknown_hash_is_null_and_client_error_names_it(net: Devnet) -> None:
    raw = requests.post(net.l2_url, json={"jsonrpc": "2.0", "id": 1,
                                          "method": "scroll_getBlockTraceByNumberOrHash",
                                          "params": [UNKNOWN]}, timeout=5).json()
    assert raw == {"jsonrpc": "2.0", "id": 1, "result": None}
    with pytest.raises(TraceFetchError, match=UNKNOWN):
        client(net).get_traces([BLOCK_02, UNKNOWN])


def test_block_number_param_and_unknown_method(net: Devnet) -> None:
    answer = requests.post(net.l2_url, json=[
        {"jsonrpc": "2.0", "id": 1, "method": "scroll_getBlockTraceByNumberOrHash",
         "params": ["0x3"]},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_foo", "params": []},
    ], timeout=5).json()
    assert answer[0]["result"]["header"]["hash"] == BLOCK_03
    assert answer[1]["error"] == {
        "code": -32601, "message": "the method eth_foo does not exist/is not available"}


def test_collisions_serve_first_file_only() -> None:
    index = load_trace_dir(TRACES)
    assert len(index.by_hash) == 4
    skipped = sorted(p.name for p, _ in index.skipped)
    assert skipped == ["blockTrace_06.json.gz", "blockTrace_07.json.gz",
                       "blockTrace_delegate.json.gz"]


def test_shipped_chain_is_contiguous() -> None:
    entries = load_trace_dir(DEFAULT_TRACE_DIR).ordered()
    assert [e.number for e in entries] == list(range(2640, 2689))
    assert all(b.parent_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))


@pytest.mark.parametrize("mode", ["error", "null", "http500"])
def test_fault_modes_fail_the_fetch(net: Devnet, mode: str) -> None:
    net.set_l2_fault(mode)
    with pytest.raises(TraceFetchError):
        client(net).get_traces([BLOCK_02])
    net.set_l2_fault("none")
    assert client(net).get_traces([BLOCK_02])


def test_fault_count_then_recovers_and_hang_times_out(net: Devnet) -> None:
    net.set_l2_fault("http500", count=1)
    retrying = TraceClient(net.l2_url, timeout=2, retries=1, backoff=0.01)
    assert retrying.get_traces([BLOCK_02])
    net.set_l2_fault("hang")
    with pytest.raises(TraceFetchError):
        TraceClient(net.l2_url, timeout=0.3, retries=0).get_traces([BLOCK_02])
    # the abandoned request is still held by the hang until the mode clears
    assert wait_until(lambda: net.ledger()["l2_fault"]["hanging"] == 1, 5) is True
    net.set_l2_fault("none")
    assert client(net).get_traces([BLOCK_02])
    assert wait_until(lambda: net.ledger()["l2_fault"]["hanging"] == 0, 5) is True


def test_fault_via_control_api(net: Devnet) -> None:
    r = requests.post(net.control_url + "l2_fault", json={"mode": "null"}, timeout=5)
    assert r.status_code == 200
    with pytest.raises(TraceFetchError, match=BLOCK_02):
        client(net).get_traces([BLOCK_02])
    r = requests.post(net.control_url + "l2_fault", json={"mode": "bogus"}, timeout=5)
    assert r.status_code == 400
