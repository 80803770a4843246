"""MockProver: the instant stand-in for orchestration tests keeps the Prover contract."""

from __future__ import annotations

import base64
import json

import pytest

from roller.errors import ProverError
from roller.ffi import Prover
from roller.ffi.mock import MockProver


def test_mock_chunk_and_batch_round_trip() -> None:
    prover: Prover = MockProver()
    a = prover.gen_chunk_proof(json.dumps([{"n": 1}, {"n": 2}]))
    b = prover.gen_chunk_proof(json.dumps([{"n": 3}]))
    parsed = json.loads(a)
    assert parsed["block_count"] == 2
    for field in ("proof", "final_pair", "vk"):
        raw = base64.b64decode(parsed[field])
        assert raw and len(raw) % 32 == 0
    assert len(base64.b64decode(parsed["instance"])) == 216  # the native chunk layout
    assert prover.verify_chunk_proof(a, json.dumps({"block_count": 2}))
    # The one task field a mock proof carries: another task's block count is refused.
    assert not prover.verify_chunk_proof(a, json.dumps({"block_count": 3}))
    batch = prover.gen_batch_proof(json.dumps([json.loads(a), json.loads(b)]))
    assert json.loads(batch)["block_count"] == 3
    infos = json.dumps([{"block_count": 2}, {"block_count": 1}])
    assert prover.verify_batch_proof(batch, infos)
    assert not prover.verify_batch_proof(batch, json.dumps([{"block_count": 2}]))
    assert not prover.verify_batch_proof(batch, "not json")
    parsed["instance"] = base64.b64encode(b"x" * 32).decode()
    assert not prover.verify_chunk_proof(json.dumps(parsed), json.dumps({"block_count": 2}))
    with pytest.raises(ProverError, match="chunk proof 0 invalid"):
        prover.gen_batch_proof(json.dumps([parsed]))


def test_mock_errors() -> None:
    with pytest.raises(ProverError, match="non-empty"):
        MockProver().gen_chunk_proof("[]")
    with pytest.raises(ProverError, match="invalid JSON"):
        MockProver().gen_chunk_proof("[")
    with pytest.raises(ProverError, match="boom"):
        MockProver(fail_with="boom").gen_chunk_proof("[{}]")
    assert not MockProver().verify_chunk_proof("nope", "{}")


def test_mock_bundle_round_trip_and_kinds() -> None:
    """Same contract as the native bundle: batch proofs in, their block counts summed, the
    task's batch infos' block count checked; proofs of another kind are refused."""
    prover: Prover = MockProver()
    chunks = [prover.gen_chunk_proof(json.dumps([{"n": i}] * (i + 1))) for i in range(3)]
    batch_a = prover.gen_batch_proof(json.dumps([json.loads(c) for c in chunks[:2]]))
    batch_b = prover.gen_batch_proof(json.dumps([chunks[2]]))  # JSON strings are accepted too
    bundle = prover.gen_bundle_proof(json.dumps([json.loads(batch_a), json.loads(batch_b)]))
    assert json.loads(bundle)["block_count"] == 6
    assert prover.verify_bundle_proof(
        bundle, json.dumps([{"block_count": 3, "chunk_count": 2}, {"block_count": 3}]))
    assert not prover.verify_bundle_proof(bundle, json.dumps([{"block_count": 3}]))
    assert not prover.verify_bundle_proof(bundle, "not json")
    # Kinds are not interchangeable, in either direction.
    assert not prover.verify_batch_proof(bundle)
    assert not prover.verify_bundle_proof(batch_a)
    assert not prover.verify_chunk_proof(batch_a)
    with pytest.raises(ProverError, match="batch proof 0 invalid"):
        prover.gen_bundle_proof(json.dumps([chunks[0]]))
    with pytest.raises(ProverError, match="chunk proof 0 invalid"):
        prover.gen_batch_proof(json.dumps([batch_a]))
    with pytest.raises(ProverError, match="non-empty"):
        prover.gen_bundle_proof("[]")
