"""Raw-hash signatures: format, v in {0,1}, low-s, coordinator acceptance rules (spec 4.4/4.5)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_keys import keys

from roller.errors import SignatureError
from roller.protocol import AuthMsg, Identity, ProofDetail, ProofMsg, recover_pk, sign_hash
from roller.protocol.signing import SECP256K1_N

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ACCOUNT = Account.from_key(KEY)
PK = keys.PrivateKey(bytes.fromhex(KEY[2:])).public_key.to_compressed_bytes().hex()
DIGEST = bytes(range(32))


def split(sig: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(sig[2:])
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def join(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def test_signature_format() -> None:
    sig = sign_hash(ACCOUNT, DIGEST)
    assert sig.startswith("0x") and len(sig) == 132 and sig == sig.lower()
    r, s, v = split(sig)
    assert v in (0, 1)
    assert s <= SECP256K1_N // 2
    assert sign_hash(ACCOUNT, DIGEST) == sig  # RFC 6979 deterministic


def test_v_in_0_1_over_many_digests() -> None:
    seen = {split(sign_hash(ACCOUNT, bytes([i]) * 32))[2] for i in range(16)}
    assert seen == {0, 1}


def test_signature_is_over_raw_hash_not_eip191() -> None:
    sig = sign_hash(ACCOUNT, DIGEST)
    r, s, v = split(sig)
    recovered = keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(DIGEST)
    assert recovered.to_checksum_address() == ACCOUNT.address


def test_recover_compressed_pk() -> None:
    pk = recover_pk(DIGEST, sign_hash(ACCOUNT, DIGEST))
    assert pk == PK
    assert len(pk) == 66 and pk[:2] in ("02", "03") and not pk.startswith("0x")


def test_recover_accepts_go_hex_variants() -> None:
    sig = sign_hash(ACCOUNT, DIGEST)
    assert recover_pk(DIGEST, sig[2:]) == PK  # prefix optional
    assert recover_pk(DIGEST, "0X" + sig[2:].upper()) == PK
    assert recover_pk(DIGEST, sig + "zz") == PK  # invalid hex tail is dropped, like Go


def test_reject_v_27_28() -> None:
    r, s, v = split(sign_hash(ACCOUNT, DIGEST))
    with pytest.raises(SignatureError, match="recovery id"):
        recover_pk(DIGEST, join(r, s, v + 27))


def test_reject_high_s() -> None:
    r, s, v = split(sign_hash(ACCOUNT, DIGEST))
    high = join(r, SECP256K1_N - s, v ^ 1)
    # The high-s form still recovers the right key mathematically, yet must be refused.
    rec = keys.Signature(vrs=(v ^ 1, r, SECP256K1_N - s)).recover_public_key_from_msg_hash(DIGEST)
    assert rec.to_compressed_bytes().hex() == PK
    with pytest.raises(SignatureError, match="low"):
        recover_pk(DIGEST, high)


@pytest.mark.parametrize("bad", ["", "0x", "0x" + "11" * 64, "0x" + "11" * 66])
def test_reject_bad_length(bad: str) -> None:
    with pytest.raises(SignatureError, match="length"):
        recover_pk(DIGEST, bad)


def test_reject_zero_r_and_unrecoverable_point() -> None:
    with pytest.raises(SignatureError):
        recover_pk(DIGEST, join(0, 1, 0))
    with pytest.raises(SignatureError):
        recover_pk(DIGEST, join(5, 1, 0))  # x=5 is not on secp256k1


def test_tampered_message_recovers_other_key() -> None:
    sig = sign_hash(ACCOUNT, DIGEST)
    assert recover_pk(bytes(32), sig) != PK


def test_signed_messages_recover_signer() -> None:
    auth = AuthMsg.signed(Identity("n", 0, 1, "v", ""), ACCOUNT)
    assert auth.recover_pk() == PK
    proof = ProofMsg.signed(ProofDetail("0xab", 0, 1, None, "e"), ACCOUNT)
    assert proof.recover_pk() == PK
    assert ProofMsg.loads(proof.dumps()).recover_pk() == PK
