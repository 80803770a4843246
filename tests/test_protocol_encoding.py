"""Unit tests of the one Go-JSON codec (roller/protocol/encoding.py): the devnet decoder's
Go error texts, and the cases where the roller's and the devnet's former copies disagreed
(member-name folding of ſ and K, the \\b and \\f escapes, base64 error offsets)."""

from __future__ import annotations

import pytest

from roller.devnet.coordinator import AUTH_MSG, PROOF_MSG
from roller.errors import GoDecodeError, GoSyntaxError, WireFormatError
from roller.protocol.encoding import (
    GoObject,
    Struct,
    b64decode_go,
    decode_struct,
    go_dumps,
    go_fold,
    loads_first,
    raw_id,
)
from roller.protocol.messages import AggProof, AuthMsg, ProofDetail


def decode(text: str, struct: Struct = PROOF_MSG) -> dict | None:
    return decode_struct(struct, loads_first(text))


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
    with pytest.raises(GoDecodeError, match="^json: cannot unmarshal " + text):
        decode(f'{{"zkProof":{{"{member}":{value}}}}}')


def test_base64_and_first_value_only() -> None:
    out = decode('{"zkProof":{"proof":{"proof":"dGVzdA==","vk":null}}} trailing')
    assert out is not None and out["zkProof"]["proof"]["proof"] == b"test"
    with pytest.raises(GoSyntaxError, match="unexpected end of JSON input"):
        loads_first('{"a":')


# -- where the two copies disagreed --------------------------------------------------------

@pytest.mark.parametrize("sig_key,msg_key", [
    ("\u017fignature", "me\u017f\u017fage"),   # ſ folds to s (the devnet copy missed it)
    ("SIGNATURE", "Message"),
])
def test_long_s_folds_on_both_sides(sig_key: str, msg_key: str) -> None:
    assert go_fold(sig_key) == go_fold("signature") and go_fold(msg_key) == go_fold("message")
    text = f'{{"{msg_key}":{{"name":"n"}},"{sig_key}":"0x1"}}'
    devnet = decode(text, AUTH_MSG)
    roller = AuthMsg.loads(text)
    assert devnet is not None
    assert devnet["message"]["name"] == roller.identity.name == "n"
    assert devnet["signature"] == roller.signature == "0x1"


def test_kelvin_sign_folds_on_both_sides() -> None:
    text = '{"zkProof":{"proof":{"bloc\u212a_count":3}}}'
    devnet = decode(text)
    assert devnet is not None and devnet["zkProof"]["proof"]["block_count"] == 3
    assert AggProof.from_json({"bloc\u212a_count": 3}).block_count == 3


def test_no_other_unicode_folds_onto_ascii() -> None:
    # Go's fold orbits give s and k alone a non-ASCII partner: İ, ı and ﬅ match nothing.
    for key in ("\u0130d", "\u0131d", "\ufb05atus"):
        out = decode(f'{{"zkProof":{{"{key}":"x","status":0}}}}')
        assert out is not None and out["zkProof"]["id"] == ""
        assert ProofDetail.from_json({key: "x"}).id == ""


def test_envelope_members_fold_like_struct_members() -> None:
    obj = loads_first('{"param\u017f":[1],"ID":2}')
    assert isinstance(obj, GoObject)
    assert obj.get_folded("params") == (True, ["1"])
    assert obj.get_folded("id") == (True, "2")


def test_b_and_f_escape_as_go_before_1_22() -> None:
    # The 2023 coordinator predates Go 1.22: \u0008 and \u000c, not \b and \f (the devnet
    # copy wrote Python's short forms in its answers).
    assert go_dumps({"e": "\b\f\n\r\t\x1f"}) == '{"e":"\\u0008\\u000c\\n\\r\\t\\u001f"}'
    assert go_dumps(["\\b", "<&>"]) == '["\\\\b","\\u003c\\u0026\\u003e"]'
    assert raw_id(loads_first('"a\\bb"')) == '"a\\u0008b"'


def test_raw_id_keeps_number_literals_and_member_order() -> None:
    assert raw_id(loads_first("1e400")) == "1e400"
    assert raw_id(loads_first('{"b":1.50,"a":[2, "<"]}')) == '{"b":1.50,"a":[2,"\\u003c"]}'


@pytest.mark.parametrize("text,offset", [
    ("dGVzdA", 4),       # short quantum without padding
    ("dGVzdA=", 7),      # one '=' where two are due
    ("dGVzdA=x", 6),     # wrong second padding character
    ("A===", 1),         # padding after one symbol
    ("-_-_", 0),         # URL alphabet
    ("dGVzdA==AAAA", 8), # data after the padding
    ("dGVz\u00e9", 4),   # non-ASCII byte
])
def test_base64_errors_at_go_offsets_on_both_sides(text: str, offset: int) -> None:
    with pytest.raises(GoDecodeError, match=f"^illegal base64 data at input byte {offset}$"):
        decode(f'{{"zkProof":{{"proof":{{"proof":"{text}"}}}}}}')
    with pytest.raises(WireFormatError, match=f"input byte {offset} "):
        b64decode_go(text, "zkProof.proof.proof")


@pytest.mark.parametrize("text,data", [
    ("", b""), ("dGVzdA==", b"test"), ("dGVz\ndA==\r\n", b"test"), ("dGVzdB==", b"test"),
    ("dGVzdA=\n=", b"test"),
])
def test_base64_accepted_on_both_sides(text: str, data: bytes) -> None:
    assert b64decode_go(text, "p") == data
    out = decode_struct(PROOF_MSG, GoObject([("zkProof", GoObject([("proof", GoObject(
        [("proof", text)]))]))]))
    assert out is not None and out["zkProof"]["proof"]["proof"] == (data or b"")
