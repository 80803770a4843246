"""The 2023-07 WebSocket variant's encoding (spec section 8, commit e78099414).

The spec gives no 2023-07 vectors, so these are derived by hand from its rules (8: the
Identity is RLP [name, roller_type, version, token], proof types 1 = chunk, 2 = batch;
4.1: a uint 1..127 is the byte itself, "" is 0x80, a nil proof 0xc0) next to the 2023-06
worked encodings of 4.2 and 4.3, and pinned. Signatures are RFC 6979 deterministic, so
they are pinned too.
"""

from __future__ import annotations

import json

import pytest
import rlp
from eth_account import Account
from eth_utils.crypto import keccak

from roller.errors import WireFormatError
from roller.protocol import (
    AggProof,
    AuthMsg,
    Identity,
    ProofDetail,
    ProofMsg,
    ProveType,
    TaskMsg,
    WsVariant,
)

ACCOUNT = Account.from_key("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
V06, V07 = WsVariant.WS_2023_06, WsVariant.WS_2023_07
H1 = "0x" + "c7" * 32
ZERO32 = bytes(32)


def test_variant_names_are_the_config_values() -> None:
    assert [v.value for v in WsVariant] == ["ws-2023-06", "ws-2023-07"]
    assert WsVariant("ws-2023-07") is V07


@pytest.mark.parametrize(("internal", "wire"), [(ProveType.BASIC, 1), (ProveType.AGGREGATOR, 2)])
def test_type_mapping(internal: int, wire: int) -> None:
    assert V07.wire_type(internal) == wire and V07.task_type(wire) == internal
    assert V06.wire_type(internal) == internal and V06.task_type(internal) == internal


def test_types_the_variant_does_not_define() -> None:
    with pytest.raises(WireFormatError, match="undefined proof type 0") as info:
        V07.task_type(0, "params.result.type")
    assert info.value.field == "params.result.type"
    with pytest.raises(WireFormatError, match="illegal proof type 3"):
        V07.task_type(3)
    with pytest.raises(WireFormatError, match="task type 2 has no ws-2023-07 proof type"):
        V07.wire_type(ProveType.BUNDLE)


# -- Identity (spec 8, first bullet; compare 4.2) ------------------------------------------


def test_identity_rlp_has_no_timestamp() -> None:
    # name "slot0", chunk (wire 1), version "v4.0.2", token "": the 4.2 example without
    # the timestamp (84 6553f100) and with type 01 instead of 80.
    identity = Identity("slot0", 1, 0, "v4.0.2", "", V07)
    encoded = rlp.encode(identity.rlp_items())
    assert encoded.hex() == "cf" "85736c6f7430" "01" "8676342e302e32" "80"
    assert identity.hash() == keccak(encoded)
    assert identity.hash().hex() == (
        "c8cd1cf4e32f6fd8d43e460ce98eed6a303f55c0b8f32124df9dc548287852cd")


def test_identity_json_has_no_timestamp_and_always_a_type() -> None:
    identity = Identity("slot0", 1, 0, "v4.0.2", "", V07)
    assert identity.dumps() == '{"name":"slot0","roller_type":1,"version":"v4.0.2","token":""}'
    # roller_type 0 (undefined) is still omitempty, as in Go.
    assert Identity("s", 0, 0, "v", "t", V07).to_json() == {"name": "s", "version": "v",
                                                            "token": "t"}


def test_identity_decoding_ignores_a_timestamp_member() -> None:
    value = {"NAME": "slot0", "roller_type": 2, "timestamp": 1700000000, "version": "v",
             "token": "t"}
    identity = Identity.from_json(value, variant=V07)
    assert identity == Identity("slot0", 2, 0, "v", "t", V07)
    # The same JSON read as 2023-06 keeps it (and hashes it).
    assert Identity.from_json(value).timestamp == 1700000000


def test_identity_refuses_a_timestamp_it_would_not_sign() -> None:
    with pytest.raises(WireFormatError, match="timestamp"):
        Identity("slot0", 1, 1700000000, "v", "", V07)


def test_auth_signature_is_over_the_0723_hash() -> None:
    auth = AuthMsg.signed(Identity("slot0", 1, 0, "v4.0.2", "", V07), ACCOUNT)
    assert auth.signature == (
        "0xc546dd4f60218a3bf2b7bcb638b180619641a1669b2f2975c32edc75181f44c8"
        "4a93588435e2ed632e0ed1fd53896d0d3641afd543ffd4e4111161e5037b2d7100")
    decoded = AuthMsg.from_json(json.loads(auth.dumps()), variant=V07)
    assert decoded == auth and decoded.variant is V07
    assert decoded.recover_pk() == ACCOUNT._key_obj.public_key.to_compressed_bytes().hex()
    # Read as 2023-06 the same bytes hash differently: the key does not verify.
    as_0623 = AuthMsg.from_json(json.loads(auth.dumps()))
    assert as_0623.identity.hash() != auth.identity.hash()


# -- TaskMsg (spec 8, third bullet) -----------------------------------------------------


def test_task_types_map_at_the_codec() -> None:
    chunk = TaskMsg(id="0x1", type=0, block_hashes=(H1,), sub_proofs=())
    assert chunk.to_json(V07) == {"id": "0x1", "type": 1, "block_hashes": [H1]}
    assert chunk.to_json() == {"id": "0x1", "block_hashes": [H1]}  # 2023-06: omitempty
    assert TaskMsg.from_json({"id": "0x1", "type": 1, "block_hashes": [H1]}, variant=V07) == chunk
    agg = AggProof(ZERO32, ZERO32, ZERO32, b"", 3)
    batch = TaskMsg(id="0x2", type=1, block_hashes=(), sub_proofs=(agg,))
    wire = batch.to_json(V07)
    assert wire["type"] == 2
    assert TaskMsg.from_json(wire, variant=V07) == batch
    # What the ledger stores is the same for both variants.
    assert TaskMsg.from_json(wire, variant=V07).dumps() == batch.dumps()


@pytest.mark.parametrize("value", [{"id": "0x1"}, {"id": "0x1", "type": 0},
                                   {"id": "0x1", "type": 3}])
def test_task_without_a_0723_type_is_refused(value: dict[str, object]) -> None:
    with pytest.raises(WireFormatError) as info:
        TaskMsg.from_json(value, "result", variant=V07)
    assert info.value.field == "result.type"


# -- ProofDetail and ProofMsg (compare 4.3) ----------------------------------------------------


def test_proof_detail_rlp_carries_the_wire_type() -> None:
    # The 4.3 example (id 0xab, status 1, proof null, error "get traces failed") of a chunk
    # task: type 80 becomes 01.
    detail = ProofDetail("0xab", ProveType.BASIC, 1, None, "get traces failed")
    encoded = rlp.encode(detail.rlp_items(V07))
    assert encoded.hex() == ("da" "8430786162" "01" "01" "c0" "91"
                             + b"get traces failed".hex())
    assert detail.hash(V07) == keccak(encoded)
    assert detail.hash(V07).hex() == (
        "7e4716ecda85ef180c3761e37fbed7fd86321b2fb183e514d230aaaac76acbe5")
    # Only the type number differs from 2023-06: the same detail with wire numbering.
    assert detail.hash(V07) == ProofDetail("0xab", 1, 1, None, "get traces failed").hash()


def test_batch_proof_detail_bytes() -> None:
    agg = AggProof(ZERO32, ZERO32, ZERO32, b"", 0)  # what the Go mock prover submits
    detail = ProofDetail("0xab", ProveType.AGGREGATOR, 0, agg, "")
    encoded = rlp.encode(detail.rlp_items(V07))
    assert encoded.hex() == ("f86f" "8430786162" "02" "80"
                             "f865" + ("a0" + "00" * 32) * 3 + "80" "80" "80")
    assert detail.hash(V07).hex() == (
        "7f2f702829c2b5925bfe822e883799d80eed14c90c06b0f1e577e7dc36f930e3")
    assert detail.to_json(V07)["type"] == 2
    assert detail.to_json()["type"] == 1


def test_proof_msg_round_trip_and_signature() -> None:
    detail = ProofDetail("0xab", ProveType.BASIC, 1, None, "get traces failed")
    msg = ProofMsg.signed(detail, ACCOUNT, V07)
    assert msg.dumps() == (
        '{"zkProof":{"id":"0xab","type":1,"status":1,"proof":null,'
        '"error":"get traces failed"},"signature":"0xc3b84ac26c7b0d36614a8c4a57e27ef811c0'
        '601754058d2ab0f1baeef48097ea60f7217cc692b86ce542e782ba8996fc2bc6f09848a197b67646'
        'cd03dafcb61900"}')
    decoded = ProofMsg.from_json(json.loads(msg.dumps()), variant=V07)
    assert decoded == msg and decoded.detail == detail
    assert decoded.recover_pk() == ACCOUNT._key_obj.public_key.to_compressed_bytes().hex()
    # The 2023-06 message of the same detail differs in JSON and signature.
    old = ProofMsg.signed(detail, ACCOUNT)
    assert "type" not in old.to_json()["zkProof"] and old.signature != msg.signature
