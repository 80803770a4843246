"""Unit tests of the devnet's token cache, chunking and verifier choice (its Go-JSON
decoding is the protocol codec's: tests/test_protocol_encoding.py)."""

from __future__ import annotations

import pytest
from devnet_helpers import BLOCK_02, BLOCK_03, TRACES

from roller.devnet.pool import TokenCache
from roller.devnet.tasksource import chunk_tasks
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir


def test_token_cache_ttl_from_creation() -> None:
    now = [0.0]
    cache = TokenCache(60, clock=lambda: now[0])
    token = cache.get_or_create("pk")
    now[0] = 59.0
    assert cache.get_or_create("pk") == token and cache.matches("pk", token)
    now[0] = 60.0
    assert not cache.matches("pk", token)
    assert cache.get_or_create("pk") != token


def test_chunks_follow_chains() -> None:
    tasks = chunk_tasks(load_trace_dir(TRACES), 2)
    assert [t.block_hashes[:2] for t in tasks][0] == (BLOCK_02, BLOCK_03)
    assert [len(t.block_hashes) for t in tasks] == [2, 1, 1]
    shipped = chunk_tasks(load_trace_dir(DEFAULT_TRACE_DIR), 10)
    assert [len(t.block_hashes) for t in shipped] == [10, 10, 10, 10, 9]
    assert all(len(t.id) == 66 for t in shipped)


def test_verifier_choice() -> None:
    from roller.devnet.verifier import StandInVerifier, make_verifier
    from roller.errors import ConfigError
    from roller.protocol.messages import AggProof

    assert isinstance(make_verifier("auto"), StandInVerifier)  # no params dir
    with pytest.raises(ConfigError):
        make_verifier("native")
    from roller.devnet.tasksource import TaskRecord

    v = StandInVerifier()
    z = bytes(32)
    chunk = TaskRecord(id="0x01", type=0, block_hashes=("0xaa",))
    assert v.verify(chunk, AggProof(z, z, z, b"", 1)).valid
    assert not v.verify(chunk, AggProof(b"this is a invalid proof", z, z, b"", 1)).valid
    assert not v.verify(chunk, AggProof(b"", z, z, b"", 1)).valid
    assert not v.verify(chunk, AggProof(z[:31], z, z, b"", 1)).valid
    # The one task field the stand-in checks: the block count, named when it differs.
    verdict = v.verify(chunk, AggProof(z, z, z, b"", 7))
    assert not verdict.valid and "block_count" in verdict.reason
    batch = TaskRecord(id="0x02", type=1, sub_proofs=(AggProof(z, z, z, b"", 2),) * 2)
    assert v.verify(batch, AggProof(z, z, z, b"", 4)).valid
    assert not v.verify(batch, AggProof(z, z, z, b"", 2)).valid
    # A bundle (HTTP H3) over batch proofs: shape and the summed block count, as for a batch.
    bundle = TaskRecord(id="03", type=2, sub_proofs=(AggProof(z, z, z, b"", 4),))
    assert v.verify(bundle, AggProof(z, z, z, b"", 4)).valid
    verdict = v.verify(bundle, AggProof(z, z, z, b"", 5))
    assert not verdict.valid and "block_count" in verdict.reason
    assert not v.verify(bundle, AggProof(b"", z, z, b"", 4)).valid
