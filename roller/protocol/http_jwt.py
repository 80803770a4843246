"""HS256 JWTs as the HTTP coordinators use them (gin-jwt v2.9.1 over golang-jwt v4.5.0).

The client only reads claims (`claims`, no signature check: the token is the coordinator's
business, we only need `exp` and `public_key`, spec 2.5). The devnet also issues and checks
tokens (`encode`, `verify`), producing golang-jwt's error texts so the coordinator layer can
map them like the real one (spec 2.4). No PyJWT needed: this is a base64 split and one HMAC.

Failure model: every malformed or unverifiable token raises JwtError with the golang-jwt
text (``token contains an invalid number of segments``, ``signature is invalid``,
``Token is expired``); tokens never appear in the messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from roller.errors import RollerError
from roller.protocol.encoding import go_dumps

_HEADER = {"alg": "HS256", "typ": "JWT"}
EXPIRED_TEXT = "Token is expired"


class JwtError(RollerError):
    """A JWT is malformed, badly signed or expired."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwtError(f"illegal base64 data: {exc}") from exc


def _segments(token: str) -> list[str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("token contains an invalid number of segments")
    return parts


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT without checking its signature."""
    try:
        payload = json.loads(_unb64url(_segments(token)[1]))
    except ValueError as exc:
        raise JwtError(f"token payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise JwtError("token payload is not a JSON object")
    return payload


def encode(payload: dict[str, Any], secret: bytes) -> str:
    """Sign `payload` with HS256. Go marshals a MapClaims map with sorted keys."""
    signing_input = (_b64url(go_dumps(_HEADER).encode()) + "."
                     + _b64url(go_dumps(dict(sorted(payload.items()))).encode()))
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(mac)


def verify(token: str, secret: bytes, now: float | None = None) -> dict[str, Any]:
    """Check signature and `exp` like golang-jwt; returns the claims."""
    head, body, sig = _segments(token)
    mac = hmac.new(secret, f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(_unb64url(sig), mac):
        raise JwtError("signature is invalid")
    payload = claims(token)
    exp = payload.get("exp")
    if isinstance(exp, int | float) and (time.time() if now is None else now) > exp:
        raise JwtError(EXPIRED_TEXT)
    return payload
