"""Coordinator-side signature check exactly as go-ethereum does it (spec 4.5).

Kept separate from the client's signing module on purpose: the coordinator is lenient
where Go is (optional 0x, odd length, invalid hex keeps the valid prefix) and strict
where Go is (65 bytes, v < 4, low-s), so tests can prove the client against these rules.
"""

from __future__ import annotations

import logging

from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError

log = logging.getLogger(__name__)

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX = set("0123456789abcdefABCDEF")


def go_from_hex(text: str) -> bytes:
    """common.FromHex: strip 0x/0X, pad odd length with a leading 0, keep the valid hex prefix."""
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) % 2:
        text = "0" + text
    out = bytearray()
    for i in range(0, len(text), 2):
        pair = text[i : i + 2]
        if not set(pair) <= _HEX:
            break
        out.append(int(pair, 16))
    return bytes(out)


def recover_compressed_pk(msg_hash: bytes, signature: str) -> str | None:
    """Compressed public key hex (66 chars, no 0x) of a valid signature, else None (logged)."""
    sig = go_from_hex(signature)
    if len(sig) != 65:
        log.info("signature rejected reason=%s", "invalid signature length")
        return None
    if sig[64] >= 4:
        log.info("signature rejected reason=%s", "invalid signature recovery id")
        return None
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if sig[64] > 1 or not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        log.info("signature rejected reason=%s", "recovery failed")
        return None
    try:
        pub = keys.Signature(vrs=(sig[64], r, s)).recover_public_key_from_msg_hash(msg_hash)
    except (BadSignature, ValidationError):
        log.info("signature rejected reason=%s", "recovery failed")
        return None
    if s > _SECP256K1_N // 2:
        # libsecp256k1's verify rejects non-normalised (high) s although recovery succeeds.
        log.info("signature rejected reason=%s", "high s")
        return None
    return str(pub.to_compressed_bytes().hex())
