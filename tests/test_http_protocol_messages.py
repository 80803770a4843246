"""HTTP generations' messages: the spec's login vectors (section 3), RLP pitfalls, the exact
Go JSON of every message per generation, decoding with field paths, the TaskMsg bridge."""

from __future__ import annotations

import json

import pytest
import rlp
from eth_account import Account

from roller.devnet import proof_structs
from roller.errors import GoDecodeError, WireFormatError
from roller.protocol import http_jwt, http_proofs
from roller.protocol.http_enums import FailureType, Generation, TaskType
from roller.protocol.http_messages import (
    Envelope,
    GetTaskRequest,
    GetTaskResponse,
    LoginMessage,
    LoginRequest,
    SubmitProofRequest,
    TokenResponse,
    agg_proof_from_json,
    agg_proof_to_json,
    compressed_pk,
    from_task_msg,
    to_task_msg,
)
from roller.protocol.messages import AggProof, ProveType, TaskMsg

# Spec section 3 test vectors.
KEY = "8b8df68fddf7ee2724b79ccbd07799909d59b4dd4f4df3f6ecdc4fb8d56bdf4c"
ACCOUNT = Account.from_key(KEY)
PK = "0324afcee4c0f906c71a562473da1f8448d6f6b0b2fa972759cd99a8838d923121"
VERSION = "v4.4.45-37af5ef5-38a68e2-1c5093c"
CHALLENGE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3MjQ4Mzg0ODUsIm9yaWdfaWF0IjoxNzI0ODM0OD"
    "g1LCJyYW5kb20iOiJ6QmdNZGstNGc4UzNUNTFrVEFsYk1RTXg2TGJ4SUs4czY3ejM2SlNuSFlJPSJ9.x9Pvihh"
    "Nx2w4_OX5uCrv8QJCNYVQkIi-K2k8XFXYmik")
VECTORS = [
    (LoginMessage(Generation.H1, CHALLENGE, "test", VERSION), "8347bcc3", "5d285e89dc",
     "0x350990a01370a2da45cdf6db4f218c36f800feed5de119110b9997dd041add6c63f2933805cf37be83"
     "a182166361ab25e9ccc220a05a006d108184ec38bd544701"),
    (LoginMessage(Generation.H2, CHALLENGE, "test", VERSION, hard_fork_name="curie"),
     "2f36ef27", "1c188dc154",
     "0x497c88afeab35a96a0f9659f53ea47c83c7151bed58497e592ffaa76130c3b3e653e13f743001eb895"
     "df37ebb813d732450620a5d1893e336df4b13d17a3403100"),
    (LoginMessage(Generation.H3, CHALLENGE, "test", VERSION, prover_types=(1,),
                  vks=("mock_vk",)), "d7ecf39f", "b8995dc882",
     "0x6b467c6c7a950f79f138d8c246841ee9758cde59d4618821007484ff291ec1fa549a5574cd585a9935"
     "2c5c34be1a5ff2e67c986af27b79f25cf1397a28bf4b9e01"),
    (LoginMessage(Generation.H4, CHALLENGE, "test", VERSION, prover_types=(1,),
                  vks=("mock_vk",), prover_provider_type=1), "97ce9909", "af4ff3e0",
     "0xb8659f094fde9ed697bd86b8d8a0a1cff902710d7750463858c8a9ff9e851b152240054f256ce9ea8a"
     "3eaf5f0d56ceed894b358d3505926dc6cfc36548f7001a01"),
]


def test_public_key_vector() -> None:
    assert compressed_pk(ACCOUNT) == PK


@pytest.mark.parametrize("message,head,tail,signature", VECTORS,
                         ids=[v[0].generation.value for v in VECTORS])
def test_login_signature_vectors(message: LoginMessage, head: str, tail: str,
                                 signature: str) -> None:
    digest = message.hash().hex()
    assert digest.startswith(head) and digest.endswith(tail)
    request = LoginRequest.signed(message, ACCOUNT)
    assert request.signature == signature
    assert request.recover_pk() == PK
    assert request.public_key == (PK if message.generation.rank >= 3 else "")


@pytest.mark.parametrize("types,encoded", [((), "80"), ((1,), "01"), ((2,), "02"),
                                           ((1, 2), "820102"), ((3,), "03")])
def test_prover_types_rlp_is_a_byte_string(types: tuple[int, ...], encoded: str) -> None:
    msg = LoginMessage(Generation.H3, "c", "n", "v", prover_types=types)
    items = msg.rlp_items()
    assert rlp.encode(items[3]).hex() == encoded
    assert rlp.encode(items[4]).hex() == "c0"  # empty vks: an empty list


def test_h2_field_count_sub_steps() -> None:
    empty = LoginMessage(Generation.H2, "c", "n", "v")
    assert len(empty.rlp_items()) == 3  # v4.3.89+: legacy layout when the fork is empty
    always = LoginMessage(Generation.H2, "c", "n", "v", h2_always_four=True)
    assert rlp.encode(always.rlp_items()).hex().endswith("80")  # v4.3.86..88
    assert always.hash() != empty.hash()
    assert LoginMessage(Generation.H1, "c", "n", "v").hash() == empty.hash()


def test_h4_provider_type_is_a_minimal_uint() -> None:
    zero = LoginMessage(Generation.H4, "c", "n", "v").rlp_items()
    assert rlp.encode(zero[3]).hex() == "80"


@pytest.mark.parametrize("gen,expected", [
    (Generation.H1, '{"message":{"challenge":"C","prover_name":"n","prover_version":"v"},'
                    '"signature":"S"}'),
    (Generation.H2, '{"message":{"challenge":"C","prover_version":"v","prover_name":"n",'
                    '"hard_fork_name":"curie"},"signature":"S"}'),
    (Generation.H3, '{"message":{"challenge":"C","prover_version":"v","prover_name":"n",'
                    '"prover_types":[1,2],"vks":["mock_vk"]},"public_key":"P","signature":"S"}'),
    (Generation.H4, '{"message":{"challenge":"C","prover_version":"v","prover_name":"n",'
                    '"prover_provider_type":1,"prover_types":[3],"vks":[]},"public_key":"P",'
                    '"signature":"S"}'),
])
def test_login_json_per_generation(gen: Generation, expected: str) -> None:
    extra: dict[str, object] = {}
    if gen == Generation.H2:
        extra = {"hard_fork_name": "curie"}
    elif gen == Generation.H3:
        extra = {"prover_types": (1, 2), "vks": ("mock_vk",)}
    elif gen == Generation.H4:
        extra = {"prover_types": (3,), "prover_provider_type": 1}
    request = LoginRequest(LoginMessage(gen, "C", "n", "v", **extra), "S",  # type: ignore[arg-type]
                           "P" if gen.rank >= 3 else "")
    assert request.dumps() == expected
    assert LoginRequest.from_json(json.loads(expected), generation=gen) == request


def test_login_decoding_accepts_base64_prover_types_and_names_paths() -> None:
    value = {"message": {"CHALLENGE": "C", "prover_name": "n", "prover_version": "v",
                         "prover_types": "AQI="}, "signature": "S", "public_key": "P"}
    assert LoginRequest.from_json(value, generation=Generation.H3).message.prover_types == (1, 2)
    value["message"]["vks"] = [1]  # type: ignore[index]
    with pytest.raises(WireFormatError) as err:
        LoginRequest.from_json(value, generation=Generation.H3)
    assert err.value.field == "message.vks[0]"
    with pytest.raises(WireFormatError) as err:
        LoginRequest.from_json({"signature": "S"}, generation=Generation.H3)
    assert err.value.field == "message"


def test_login_message_rejects_fields_of_other_generations() -> None:
    with pytest.raises(WireFormatError, match="hard_fork_name"):
        LoginMessage(Generation.H3, "c", "n", "v", hard_fork_name="curie")
    with pytest.raises(WireFormatError, match="prover_types"):
        LoginMessage(Generation.H1, "c", "n", "v", prover_types=(1,))
    with pytest.raises(WireFormatError, match="prover_provider_type"):
        LoginMessage(Generation.H3, "c", "n", "v", prover_provider_type=1)
    with pytest.raises(WireFormatError, match=r"prover_types\[0\]"):
        LoginMessage(Generation.H3, "c", "n", "v", prover_types=(256,))
    with pytest.raises(WireFormatError, match="public_key"):
        LoginRequest(LoginMessage(Generation.H3, "c", "n", "v"), "S", "0x02ab")


def test_token_response_repr_hides_the_token() -> None:
    resp = TokenResponse.from_json({"time": "2024-10-23T16:00:00Z", "token": "secret.jwt.x"})
    assert "secret" not in repr(resp)
    assert "secret" not in repr(LoginMessage(Generation.H1, "secret.jwt.x", "n", "v"))


@pytest.mark.parametrize("request_,expected", [
    (GetTaskRequest(Generation.H1, 100), '{"prover_height":100,"task_type":0}'),
    (GetTaskRequest(Generation.H1, 100, task_type=1, vk="abc"),
     '{"prover_height":100,"task_type":1,"vk":"abc"}'),
    (GetTaskRequest(Generation.H2, 0, task_type=2, vks=("a", "b")),
     '{"prover_height":0,"task_type":2,"vks":["a","b"]}'),
    (GetTaskRequest(Generation.H3, 7, task_types=(1, 2, 3)),
     '{"prover_height":7,"task_types":[1,2,3]}'),
    (GetTaskRequest(Generation.H4, 7, task_types=(3,), universal=True, task_id="t"),
     '{"prover_height":7,"task_types":[3],"universal":true,"task_id":"t"}'),
])
def test_get_task_request_json(request_: GetTaskRequest, expected: str) -> None:
    assert request_.dumps() == expected
    assert GetTaskRequest.from_json(json.loads(expected),
                                    generation=request_.generation) == request_


def test_get_task_request_validation() -> None:
    with pytest.raises(WireFormatError, match="prover_height"):
        GetTaskRequest(Generation.H1, 0)  # H1 binds it `required`
    with pytest.raises(WireFormatError, match="task_types"):
        GetTaskRequest(Generation.H2, 1, task_types=(1,))
    with pytest.raises(WireFormatError, match="task_type"):
        GetTaskRequest(Generation.H3, 1, task_type=1)
    with pytest.raises(WireFormatError, match="vks"):
        GetTaskRequest(Generation.H2, 1, vks=("only-one",))
    with pytest.raises(WireFormatError) as err:
        GetTaskRequest.from_json({"prover_height": -1}, generation=Generation.H3)
    assert err.value.field == "prover_height"


CHUNK_DATA = '{"block_hashes":["0x' + "Ab" * 32 + '"]}'


def test_get_task_response_per_generation() -> None:
    h1 = GetTaskResponse.from_json({"task_id": "0x01", "task_type": 1, "task_data": CHUNK_DATA},
                                   generation=Generation.H1)
    assert h1.dumps() == ('{"task_id":"0x01","task_type":1,"task_data":'
                          + json.dumps(CHUNK_DATA) + "}")
    assert h1.key == "0x01" and h1.block_hashes() == ("0x" + "ab" * 32,)
    h3 = GetTaskResponse(Generation.H3, "c23d" * 16, 3, '{"batch_proofs":[]}', uuid="u",
                         hard_fork_name="darwin")
    assert h3.dumps() == ('{"uuid":"u","task_id":"' + "c23d" * 16 + '","task_type":3,'
                          '"task_data":"{\\"batch_proofs\\":[]}","hard_fork_name":"darwin"}')
    assert h3.key == "u"
    with pytest.raises(WireFormatError, match="uuid"):
        GetTaskResponse(Generation.H3, "t", 1, CHUNK_DATA)
    with pytest.raises(WireFormatError, match="bundle"):
        GetTaskResponse(Generation.H2, "t", 3, "{}", uuid="u")
    bad = GetTaskResponse(Generation.H2, "t", 1, '{"block_hashes":["0x12"]}', uuid="u")
    with pytest.raises(WireFormatError) as err:
        bad.block_hashes()
    assert err.value.field == "task_data.block_hashes[0]"


def test_submit_proof_json_and_failure_reports() -> None:
    h3 = GetTaskResponse(Generation.H3, "0x01", 1, CHUNK_DATA, uuid="u", hard_fork_name="d")
    ok = SubmitProofRequest.success(h3, '{"proof":null}')
    assert ok.dumps() == ('{"uuid":"u","task_id":"0x01","task_type":1,"status":0,'
                          '"proof":"{\\"proof\\":null}"}')
    fail = SubmitProofRequest.failure(h3, "oom", FailureType.PANIC)
    assert fail.dumps() == ('{"uuid":"u","task_id":"0x01","task_type":1,"status":1,'
                            '"proof":"null","failure_type":1,"failure_msg":"oom"}')
    h1 = GetTaskResponse(Generation.H1, "0x01", 1, CHUNK_DATA)
    assert SubmitProofRequest.failure(h1, "x").proof == "{}"  # v4.1.0..68 parse it anyway
    h2 = GetTaskResponse(Generation.H2, "0x01", 2, "{}", uuid="u", hard_fork_name="curie")
    assert json.loads(SubmitProofRequest.success(h2, "{}").dumps())["hard_fork_name"] == "curie"
    h4 = GetTaskResponse(Generation.H4, "0x01", 1, CHUNK_DATA, uuid="u")
    assert json.loads(SubmitProofRequest.success(h4, "{}").dumps())["universal"] is True
    for text in (ok.dumps(), fail.dumps()):
        assert SubmitProofRequest.from_json(json.loads(text), generation=Generation.H3
                                            ).dumps() == text
    with pytest.raises(WireFormatError, match="proof"):
        SubmitProofRequest(Generation.H3, "t", 1, 0, "", uuid="u")
    with pytest.raises(WireFormatError, match="uuid"):
        SubmitProofRequest(Generation.H3, "t", 1, 0, "{}")
    with pytest.raises(WireFormatError, match="task_type"):
        SubmitProofRequest(Generation.H1, "t", 0, 0, "{}")


def test_envelope() -> None:
    env = Envelope.loads(b'{"errcode":20004,"errmsg":"get empty prover task","data":null}')
    assert not env.ok and env.dumps() == '{"errcode":20004,"errmsg":"get empty prover task",' \
                                         '"data":null}'
    with pytest.raises(WireFormatError) as err:
        Envelope.loads(b'{"errcode":"0"}')
    assert err.value.field == "errcode"
    with pytest.raises(WireFormatError):
        Envelope.loads(b"404 page not found")


def test_task_msg_bridge_and_ws_json_unchanged() -> None:
    ws = '{"id":"0x01","type":1,"block_hashes":["0x' + "ab" * 32 + '"]}'
    assert TaskMsg.loads(ws).dumps() == ws  # the WS round trip is byte-identical
    bundle = GetTaskResponse(Generation.H3, "ff" * 32, 3, '{"batch_proofs":[]}', uuid="u")
    msg = to_task_msg(bundle)
    # Keyed by the task, not the uuid.
    assert msg.id == "ff" * 32 and msg.type == ProveType.BUNDLE and msg.block_hashes == ()
    assert from_task_msg(TaskMsg.loads(msg.dumps())) == bundle
    chunk = GetTaskResponse(Generation.H1, "0x01", 1, CHUNK_DATA)
    msg = to_task_msg(chunk)
    assert msg.type == ProveType.BASIC and msg.block_hashes == ("0x" + "ab" * 32,)
    assert from_task_msg(msg) == chunk
    with pytest.raises(WireFormatError, match="http_task"):
        from_task_msg(TaskMsg.loads(ws))


def _layout(kind: int, blocks: int, fill: int) -> AggProof:
    """An AggProof whose instance has the native layout of `kind` (HTTP numbering), so its
    final_pair and block_count are what the codec re-derives."""
    if kind == TaskType.CHUNK:
        instance = bytes([fill]) * 208 + blocks.to_bytes(8, "big")
    else:
        instance = bytes([fill]) * 144 + blocks.to_bytes(8, "big") + bytes([fill]) * 64
    final_pair, block_count = http_proofs.derive(kind, instance)
    assert block_count == blocks and len(final_pair) == 64
    return AggProof(bytes([fill]) * 32, instance, final_pair, b"\x04" * 32, blocks)


def test_task_msg_carries_the_sub_proofs_of_batch_and_bundle_tasks() -> None:
    one, two = _layout(1, 3, 1), _layout(1, 2, 6)
    proofs = [http_proofs.encode_value(Generation.H3, 1, "0x01", p) for p in (one, two)]
    # What the Go struct drops is gone; the codec re-derives it from the instance.
    assert all(set(p) == {"protocol", "proof", "instances", "vk"} for p in proofs)
    # A coordinator's re-encoded proofs gain members (`storage_trace`, `chunk_info`, ...):
    # ignored, like Go's decoder; batch_header and blob_bytes stay in http_task, opaque.
    proofs[0].update(storage_trace=None, chunk_info={"chain_id": 1})
    batch = GetTaskResponse(Generation.H3, "0x02", 2, json.dumps(
        {"chunk_infos": [{}, {}], "chunk_proofs": proofs, "batch_header": None,
         "blob_bytes": None}), uuid="u2")
    msg = to_task_msg(batch)
    assert msg.type == ProveType.AGGREGATOR and msg.sub_proofs == (one, two)
    assert from_task_msg(TaskMsg.loads(msg.dumps())) == batch
    batch_proof = _layout(2, 5, 9)
    h4 = http_proofs.encode_value(Generation.H4, 2, "0x" + "ab" * 32, batch_proof)
    assert h4["metadata"]["batch_hash"] == "0x" + "ab" * 32
    bundle = GetTaskResponse(Generation.H4, "ab" * 32, 3, json.dumps(
        {"fork_name": "euclidv2", "batch_proofs": [h4]}), uuid="u3")
    assert to_task_msg(bundle).sub_proofs == (batch_proof,)
    with pytest.raises(WireFormatError, match=r"task_data.chunk_proofs\[1\].proof"):
        bad = [proofs[0], {"proof": "not base64!"}]
        to_task_msg(GetTaskResponse(Generation.H2, "0x02", 2, json.dumps(
            {"chunk_infos": [], "chunk_proofs": bad}), uuid="u4"))


@pytest.mark.parametrize("gen", list(Generation))
def test_each_generation_round_trips_through_its_go_struct(gen: Generation) -> None:
    """encode -> the devnet's Go struct (unknown members dropped, Go base64) -> decode gives
    the prover's AggProof back, final_pair and block_count re-derived; H3 batches name their
    batch hash, a bundle's EVM proof carries the instance as hex."""
    for kind in (1, 2, 3) if gen.rank >= 3 else (1, 2):
        proof = _layout(kind, 4, 7)
        task_id = "0x" + "cd" * 32
        text = http_proofs.encode_proof(gen, kind, task_id, proof)
        stored = proof_structs.round_trip(gen, kind, text)
        assert "final_pair" not in json.dumps(stored)
        assert http_proofs.decode_value(gen, kind, stored) == proof
        if gen == Generation.H3 and kind == 2:
            assert stored["batch_hash"] == task_id
    # The struct drops what it does not declare, and a nil []byte comes back as null.
    legacy = proof_structs.round_trip(Generation.H1, 1, agg_proof_to_json(_layout(1, 1, 1)))
    assert list(legacy) == ["storage_trace", "protocol", "proof", "instances", "vk"]
    assert legacy["storage_trace"] is None and legacy["protocol"] is None
    with pytest.raises(GoDecodeError, match="message.ChunkProof.proof of type"):
        proof_structs.round_trip(Generation.H4, 1, agg_proof_to_json(_layout(1, 1, 1)))
    with pytest.raises(GoDecodeError, match="common.Hash"):
        proof_structs.round_trip(Generation.H3, 2, '{"batch_hash": "ab"}')


def test_codec_leaves_unlaid_instances_to_the_prover() -> None:
    """An instance of no valid layout re-derives nothing: the prover refuses it itself."""
    assert http_proofs.derive(1, b"\x01" * 32) == (b"", 0)
    assert http_proofs.derive(2, b"\x01" * 150) == (b"", 0)
    empty = http_proofs.decode_value(Generation.H3, 1, {})
    assert empty == AggProof(b"", b"", b"", b"", 0)
    with pytest.raises(WireFormatError, match="public_values"):
        http_proofs.decode_value(Generation.H4, 1, {"proof": {"public_values": [256]}})


def test_agg_proof_json_round_trip() -> None:
    proof = AggProof(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04", 3)
    text = agg_proof_to_json(proof)
    assert json.loads(text)["instances"] == "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
    assert agg_proof_from_json(text) == proof
    assert agg_proof_from_json("{}") == agg_proof_from_json("null")


def test_jwt_helpers() -> None:
    token = http_jwt.encode({"public_key": PK, "exp": 2000}, b"k")
    assert http_jwt.claims(token)["public_key"] == PK
    assert http_jwt.verify(token, b"k", now=1999)["exp"] == 2000
    with pytest.raises(http_jwt.JwtError, match="Token is expired"):
        http_jwt.verify(token, b"k", now=2001)
    with pytest.raises(http_jwt.JwtError, match="signature is invalid"):
        http_jwt.verify(token, b"other", now=0)
    with pytest.raises(http_jwt.JwtError, match="invalid number of segments"):
        http_jwt.claims("abc")
    # The spec's challenge vector decodes to exactly the three challenge claims.
    assert sorted(http_jwt.claims(CHALLENGE)) == ["exp", "orig_iat", "random"]
