"""Wire messages: Go JSON encoding/decoding rules and RLP hashing (spec 3, 4.1-4.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rlp
from eth_utils import keccak

from roller.errors import WireFormatError
from roller.protocol import AggProof, AuthMsg, Identity, ProofDetail, ProofMsg, TaskMsg
from roller.protocol.encoding import go_dumps

H1 = "0x" + "c7" * 32
H2 = "0x" + "13" * 32


def ident(**kw: object) -> Identity:
    base: dict[str, object] = dict(name="slot0", roller_type=0, timestamp=1700000000,
                                   version="v4.0.2", token="")
    base.update(kw)
    return Identity(**base)  # type: ignore[arg-type]


def full_proof() -> AggProof:
    return AggProof(proof=b"test", instance=b"\x00" * 32, final_pair=b"\xff\xfe",
                    vk=b"vk!", block_count=2)


# -- RLP and hashes: the hand-checked worked encodings of spec 4.2 / 4.3 -------------------

def test_identity_rlp_matches_spec_4_2() -> None:
    expected = bytes.fromhex("d4" "85736c6f7430" "80" "846553f100" "8676342e302e32" "80")
    assert rlp.encode(ident().rlp_items()) == expected
    assert ident().hash() == keccak(expected)


def test_proof_detail_rlp_matches_spec_4_3() -> None:
    detail = ProofDetail(id="0xab", type=0, status=1, proof=None, error="get traces failed")
    expected = bytes.fromhex("da" "8430786162" "80" "01" "c0" "91") + b"get traces failed"
    assert rlp.encode(detail.rlp_items()) == expected
    assert detail.hash() == keccak(expected)


def test_keccak_is_ethereum_keccak_not_sha3() -> None:
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_identity_hash_regression() -> None:
    assert ident().hash().hex() == (
        "663ba526c49f002901c2cfe18d1f20c77543ddc43df38012640635933133f7c5")


def test_uint_rlp_rules() -> None:
    # type 1 is the single byte 0x01; larger values are length-prefixed; zero is 0x80.
    assert rlp.encode(ident(roller_type=1).rlp_items())[7:8] == b"\x01"
    detail = ProofDetail(id="", type=1, status=0, proof=AggProof(b"", b"", b"", b"", 300),
                         error="")
    assert rlp.encode(detail.rlp_items()) == bytes.fromhex(
        "cc" "80" "01" "80" "c7" "80808080" "82012c" "80")


def test_null_proof_and_empty_proof_hash_differently() -> None:
    empty = AggProof(b"", b"", b"", b"", 0)
    with_null = ProofDetail(id="x", type=0, status=0, proof=None, error="")
    with_empty = ProofDetail(id="x", type=0, status=0, proof=empty, error="")
    assert rlp.encode(with_null.rlp_items()) == bytes.fromhex("c5" "78" "80" "80" "c0" "80")
    assert rlp.encode(with_empty.rlp_items()) == bytes.fromhex("ca" "78" "80" "80"
                                                               "c58080808080" "80")
    assert with_null.hash() != with_empty.hash()
    # JSON null decodes to None, JSON {} (and all-null members) to the five-element list.
    decoded_null = ProofDetail.from_json({"id": "x", "status": 0, "proof": None})
    decoded_obj = ProofDetail.from_json({"id": "x", "status": 0, "proof": {}})
    decoded_nulls = ProofDetail.from_json({"id": "x", "status": 0, "proof": {
        "proof": None, "instance": None, "final_pair": None, "vk": None, "block_count": 0}})
    assert decoded_null.hash() == with_null.hash()
    assert decoded_obj.hash() == with_empty.hash() == decoded_nulls.hash()


def test_empty_string_and_null_bytes_hash_the_same() -> None:
    a = AggProof.from_json({"proof": "", "instance": None, "final_pair": "", "vk": None,
                            "block_count": 0})
    assert a == AggProof(b"", b"", b"", b"", 0)


# -- JSON encoding: member order, omitempty, base64 --------------------------------------

def test_identity_json_order_and_omitempty() -> None:
    assert ident().dumps() == (
        '{"name":"slot0","timestamp":1700000000,"version":"v4.0.2","token":""}')
    assert list(ident(roller_type=1, token="t").to_json()) == [
        "name", "roller_type", "timestamp", "version", "token"]
    assert ident(timestamp=0).to_json()["timestamp"] == 0  # never omitted


def test_auth_msg_json() -> None:
    msg = AuthMsg(identity=ident(), signature="0xab")
    assert msg.dumps() == ('{"message":{"name":"slot0","timestamp":1700000000,'
                           '"version":"v4.0.2","token":""},"signature":"0xab"}')


def test_proof_msg_json_failure_shape() -> None:
    detail = ProofDetail(id="0xab", type=0, status=1, proof=None, error="get traces failed")
    assert ProofMsg(detail=detail, signature="0x01").dumps() == (
        '{"zkProof":{"id":"0xab","status":1,"proof":null,"error":"get traces failed"},'
        '"signature":"0x01"}')


def test_proof_msg_json_success_shape() -> None:
    detail = ProofDetail(id="0xab", type=1, status=0, proof=full_proof(), error="")
    assert json.loads(ProofMsg(detail=detail, signature="0x").dumps()) == {
        "zkProof": {"id": "0xab", "type": 1, "status": 0, "proof": {
            "proof": "dGVzdA==", "instance": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "final_pair": "//4=", "vk": "dmsh", "block_count": 2}},
        "signature": "0x"}
    assert list(detail.to_json()) == ["id", "type", "status", "proof"]
    assert list(detail.to_json()["proof"]) == ["proof", "instance", "final_pair", "vk",
                                               "block_count"]


def test_agg_proof_empty_bytes_encode_as_null() -> None:
    assert AggProof(b"", b"", b"", b"", 0).dumps() == (
        '{"proof":null,"instance":null,"final_pair":null,"vk":null,"block_count":0}')


def test_task_msg_json_omitempty() -> None:
    assert TaskMsg(id="t", type=0, block_hashes=(), sub_proofs=()).dumps() == '{"id":"t"}'
    basic = TaskMsg(id="t", type=0, block_hashes=(H1, H2), sub_proofs=())
    assert basic.dumps() == f'{{"id":"t","block_hashes":["{H1}","{H2}"]}}'
    agg = TaskMsg(id="t", type=1, block_hashes=(), sub_proofs=(full_proof(),))
    assert list(agg.to_json()) == ["id", "type", "sub_proofs"]


def test_go_dumps_escapes_like_go() -> None:
    assert go_dumps({"a": "<b>&\u2028"}) == '{"a":"\\u003cb\\u003e\\u0026\\u2028"}'
    assert go_dumps({"a": "\b\f\n\t\x01"}) == '{"a":"\\u0008\\u000c\\n\\t\\u0001"}'
    assert go_dumps({"a": "\\b é"}) == '{"a":"\\\\b é"}'


# -- JSON decoding like Go ---------------------------------------------------------------

@pytest.mark.parametrize("msg", [
    AuthMsg(identity=ident(roller_type=1, token="abc"), signature="0x12"),
    ProofMsg(detail=ProofDetail(id="0xab", type=1, status=0, proof=full_proof(), error=""),
             signature="0x34"),
    ProofMsg(detail=ProofDetail(id="0xab", type=0, status=1, proof=None, error="boom"),
             signature="0x56"),
    TaskMsg(id="0x1", type=1, block_hashes=(H1,), sub_proofs=(full_proof(), full_proof())),
])
def test_round_trip(msg: AuthMsg | ProofMsg | TaskMsg) -> None:
    assert type(msg).loads(msg.dumps()) == msg


def test_decode_case_insensitive_and_unknown_members() -> None:
    msg = AuthMsg.from_json({"MESSAGE": {"Name": "n", "ROLLER_TYPE": 1, "TimeStamp": 5,
                                         "extra": [1, 2], "token": "t"},
                             "Signature": "0x1", "other": {}})
    assert msg == AuthMsg(identity=Identity("n", 1, 5, "", "t"), signature="0x1")


def test_decode_go_unicode_folding() -> None:
    # Go folds the Kelvin sign to k and long s to s when matching member names.
    proof = AggProof.from_json({"bloc\u212a_count": 3, "proof": "AA=="})
    assert proof.block_count == 3
    detail = ProofDetail.from_json({"id": "x", "\u017ftatus": 1})
    assert detail.status == 1


def test_decode_last_duplicate_wins() -> None:
    assert Identity.from_json({"name": "a", "NAME": "b"}).name == "b"


def test_decode_nulls_and_missing_are_zero_values() -> None:
    assert Identity.from_json({"name": None, "timestamp": None}) == Identity("", 0, 0, "", "")
    assert TaskMsg.from_json({"id": "x", "block_hashes": None}) == TaskMsg("x", 0, (), ())


def test_decode_normalises_hashes_and_accepts_0X() -> None:
    task = TaskMsg.from_json({"id": "x", "block_hashes": ["0X" + "AB" * 32]})
    assert task.block_hashes == ("0x" + "ab" * 32,)


def test_decode_base64_variants() -> None:
    assert AggProof.from_json({"proof": "dGVzdA=="}).proof == b"test"
    assert AggProof.from_json({"proof": "dGVz\ndA==\r\n"}).proof == b"test"  # Go skips CR/LF
    assert AggProof.from_json({"proof": [116, 101]}).proof == b"te"  # Go takes byte arrays


def test_decode_lone_surrogate_becomes_replacement_char() -> None:
    assert Identity.loads('{"name":"a\\ud800"}').name == "a\ufffd"


@pytest.mark.parametrize(("cls", "value", "field"), [
    (AuthMsg, {"message": {"timestamp": -1}}, "message.timestamp"),
    (AuthMsg, {"message": {"timestamp": 2**32}}, "message.timestamp"),
    (AuthMsg, {"message": {"timestamp": "1"}}, "message.timestamp"),
    (AuthMsg, {"message": {"timestamp": 1.5}}, "message.timestamp"),
    (AuthMsg, {"message": {"timestamp": 1.0}}, "message.timestamp"),
    (AuthMsg, {"message": {"roller_type": 256}}, "message.roller_type"),
    (AuthMsg, {"message": {"roller_type": True}}, "message.roller_type"),
    (AuthMsg, {"message": {"name": 5}}, "message.name"),
    (AuthMsg, {"message": {}, "signature": 1}, "signature"),
    (AuthMsg, {"signature": "0x"}, "message"),
    (AuthMsg, {"message": None}, "message"),
    (AuthMsg, {"message": []}, "message"),
    (AuthMsg, [], "$"),
    (ProofMsg, {"zkProof": {"proof": {"block_count": -1}}}, "zkProof.proof.block_count"),
    (ProofMsg, {"zkProof": {"proof": {"block_count": 2**64}}}, "zkProof.proof.block_count"),
    (ProofMsg, {"zkProof": {"status": 2**32}}, "zkProof.status"),
    (ProofMsg, {"zkProof": {"type": -1}}, "zkProof.type"),
    (ProofMsg, {"zkProof": {"proof": {"proof": "dGVzdA"}}}, "zkProof.proof.proof"),
    (ProofMsg, {"zkProof": {"proof": {"vk": "dGVzdA="}}}, "zkProof.proof.vk"),
    (ProofMsg, {"zkProof": {"proof": {"instance": "-_-_"}}}, "zkProof.proof.instance"),
    (ProofMsg, {"zkProof": {"proof": {"final_pair": "A==="}}}, "zkProof.proof.final_pair"),
    (ProofMsg, {"zkProof": {"proof": {"proof": 12}}}, "zkProof.proof.proof"),
    (ProofMsg, {"zkProof": {"proof": {"proof": [1, 256]}}}, "zkProof.proof.proof[1]"),
    (ProofMsg, {"zkProof": {"proof": "x"}}, "zkProof.proof"),
    (ProofMsg, {"zkProof": None}, "zkProof"),
    (TaskMsg, {"block_hashes": [H1, "0x" + "ab" * 31]}, "block_hashes[1]"),
    (TaskMsg, {"block_hashes": ["0x" + "ab" * 33]}, "block_hashes[0]"),
    (TaskMsg, {"block_hashes": ["ab" * 32]}, "block_hashes[0]"),
    (TaskMsg, {"block_hashes": ["0x" + "zz" * 32]}, "block_hashes[0]"),
    (TaskMsg, {"block_hashes": [None]}, "block_hashes[0]"),
    (TaskMsg, {"block_hashes": H1}, "block_hashes"),
    (TaskMsg, {"sub_proofs": [{"block_count": -2}]}, "sub_proofs[0].block_count"),
    (TaskMsg, {"sub_proofs": [None]}, "sub_proofs[0]"),
    (TaskMsg, {"id": 7}, "id"),
])
def test_decode_errors_name_the_field(
    cls: type[AuthMsg | ProofMsg | TaskMsg], value: object, field: str
) -> None:
    with pytest.raises(WireFormatError) as info:
        cls.from_json(value)
    assert info.value.field == field
    assert field in str(info.value)


def test_loads_invalid_json() -> None:
    with pytest.raises(WireFormatError):
        TaskMsg.loads("{not json")


def test_constructor_validation() -> None:
    with pytest.raises(WireFormatError):
        ident(roller_type=256)
    with pytest.raises(WireFormatError):
        ident(timestamp=-1)
    with pytest.raises(WireFormatError):
        TaskMsg(id="x", type=0, block_hashes=("0x12",), sub_proofs=())
    with pytest.raises(WireFormatError):
        AggProof(proof="AA==", instance=b"", final_pair=b"", vk=b"", block_count=0)  # type: ignore[arg-type]
    lists: dict[str, Any] = {"block_hashes": ["0x" + "AB" * 32], "sub_proofs": []}
    assert TaskMsg(id="x", type=0, **lists).block_hashes == ("0x" + "ab" * 32,)
