"""Unit tests of the devnet's Go-JSON decoding, token cache and chunking."""

from __future__ import annotations

import pytest
from devnet_helpers import BLOCK_02, BLOCK_03, TRACES

from roller.devnet import gojson
from roller.devnet.pool import TokenCache
from roller.devnet.tasksource import chunk_tasks
from roller.devnet.traces import DEFAULT_TRACE_DIR, load_trace_dir


def decode(text: str, struct: gojson.Struct = gojson.PROOF_MSG) -> dict | None:
    return gojson.decode_struct(struct, gojson.loads_first(text))


def test_zero_values_and_case_folding() -> None:
    out = decode('{"ZKPROOF":{"Id":"0x1","status":1,"proof":null},"extra":1}')
    assert out == {"zkProof": {"id": "0x1", "type": 0, "status": 1, "proof": None, "error": ""},
                   "signature": ""}


@pytest.mark.parametrize("member,value,text", [
    ("status", "1.5", "number 1.5 into Go struct field .zkProof.status of type "
                      "message.RespStatus"),
    ("type", "256", "number 256 into Go struct field .zkProof.type of type message.ProveType"),
    ("id", "5", "number into Go struct field .zkProof.id of type string"),
    ("status", '"1"', "string into Go struct field .zkProof.status of type message.RespStatus"),
])
def test_type_errors_read_like_go(member: str, value: str, text: str) -> None:
    with pytest.raises(gojson.GoDecodeError, match="^json: cannot unmarshal " + text):
        decode(f'{{"zkProof":{{"{member}":{value}}}}}')


def test_base64_and_first_value_only() -> None:
    out = decode('{"zkProof":{"proof":{"proof":"dGVzdA==","vk":null}}} trailing')
    assert out is not None and out["zkProof"]["proof"]["proof"] == b"test"
    with pytest.raises(gojson.GoDecodeError, match="illegal base64 data at input byte"):
        decode('{"zkProof":{"proof":{"proof":"dGVzdA"}}}')
    with pytest.raises(gojson.GoSyntaxError, match="unexpected end of JSON input"):
        gojson.loads_first('{"a":')


def test_go_dumps_escapes_html() -> None:
    assert gojson.dumps({"e": "<a&b>"}) == '{"e":"\\u003ca\\u0026b\\u003e"}'


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
