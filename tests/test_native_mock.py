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
    for field in ("proof", "instance", "final_pair", "vk"):
        raw = base64.b64decode(parsed[field])
        assert raw and len(raw) % 32 == 0
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
