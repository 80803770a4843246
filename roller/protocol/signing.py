"""Raw-hash secp256k1 signatures as the coordinator expects them (spec 4.4, 4.5).

The signature is over the 32-byte message hash itself (no EIP-191 prefix), encoded as
``0x`` + r(32) || s(32) || v(1) with v in {0, 1} and low s.
"""

from __future__ import annotations

import re

from eth_account.signers.local import LocalAccount
from eth_keys.main import lazy_key_api as keys
from eth_typing import Hash32

from roller.errors import SignatureError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_HEX_PAIR_RE = re.compile("[0-9a-fA-F]{2}")


def sign_hash(account: LocalAccount, digest: bytes) -> str:
    """Sign a 32-byte digest; returns the coordinator's signature string."""
    if len(digest) != 32:
        raise SignatureError(f"digest must be 32 bytes, got {len(digest)}")
    signed = account.unsafe_sign_hash(Hash32(digest))
    r, s, v = int(signed.r), int(signed.s), int(signed.v)
    if s > _HALF_N:
        # eth-keys always yields low s; normalise anyway since the verifier insists on it.
        s, v = SECP256K1_N - s, v ^ 1
    recovery_id = v - 27 if v >= 27 else v
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery_id])).hex()


def _go_from_hex(text: str) -> bytes:
    """go-ethereum common.FromHex: optional 0x/0X, odd length gets a leading 0, decoding
    stops at the first invalid pair (keeping what was decoded)."""
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) % 2:
        text = "0" + text
    out = bytearray()
    for i in range(0, len(text), 2):
        pair = text[i : i + 2]
        if not _HEX_PAIR_RE.fullmatch(pair):
            break
        out.append(int(pair, 16))
    return bytes(out)


def recover_pk(digest: bytes, signature: str) -> str:
    """Recover the signer's compressed public key (66 lowercase hex chars, no 0x) with the
    coordinator's acceptance rules: exactly 65 bytes, recovery id < 4, r and s in range,
    low s. Raises SignatureError otherwise."""
    if len(digest) != 32:
        raise SignatureError(f"digest must be 32 bytes, got {len(digest)}")
    if not isinstance(signature, str):
        raise SignatureError("signature must be a hex string")
    sig = _go_from_hex(signature)
    if len(sig) != 65:
        raise SignatureError("invalid signature length")
    v = sig[64]
    if v >= 4:
        raise SignatureError("invalid signature recovery id")
    if v >= 2:
        # Ids 2/3 mean x = r + n, reachable only for r < p - n (~2^-128); no signer emits it.
        raise SignatureError("unsupported signature recovery id")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise SignatureError("signature r or s out of range")
    if s > _HALF_N:
        raise SignatureError("signature s is not low (malleable form rejected)")
    try:
        public_key = keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth-keys raises several types for unrecoverable points
        raise SignatureError(f"public key recovery failed: {exc}") from exc
    return public_key.to_compressed_bytes().hex()
