"""Error envelope codes and texts of the HTTP coordinator generations, one error class each
(spec coordinator-http-protocol 1.1, 2.2, 2.4, 4.1, 6.3).

Every coordinator refusal is HTTP 200 with ``{"errcode": n, "errmsg": text}``. `error_for`
maps (endpoint, errcode, errmsg) to the most specific class below by errcode first and then
by a substring of the text; texts are matched lowercased because the JWT layer lowercases
them (2.4) while the handlers do not. An unknown text still maps to its errcode's class.

``permanent`` (on CoordinatorError) says whether the same request can later succeed:
permanent errors are final for the task or the request; the others are worth a retry
(after a pause, a re-login, or an operator fix).
"""

from __future__ import annotations

from enum import IntEnum

from roller.errors import CoordinatorError


class ErrCode(IntEnum):
    """`common/types/errno.go` (identical v4.1.0 .. v4.4.70)."""

    SUCCESS = 0
    INTERNAL_SERVER_ERROR = 500
    PARAMETER_INVALID = 20001
    GET_TASK_FAILURE = 20002
    HANDLE_ZK_PROOF_FAILURE = 20003
    EMPTY_PROOF_DATA = 20004
    JWT_COMMON = 50000
    JWT_TOKEN_EXPIRED = 50001


class HttpCoordinatorError(CoordinatorError):
    """An error envelope from an HTTP coordinator; ``method`` is the endpoint name."""

    code_value: int = -1


class InternalServerError(HttpCoordinatorError):
    code_value = ErrCode.INTERNAL_SERVER_ERROR


class ParameterInvalid(HttpCoordinatorError):
    """20001: the request failed binding or validation; resending it unchanged cannot help."""

    code_value = ErrCode.PARAMETER_INVALID
    permanent = True


class ProofUnparsable(ParameterInvalid):
    """The `proof` JSON does not fit the proof type (20001 H1/H2, raw Go JSON error 20003
    H3+). The coordinator keeps the task assigned until its timeout."""


class WrongProofType(ParameterInvalid):
    """20001 `parameter wrong proof type`."""


# -- get_task (20002 / 20004) ----------------------------------------------------------

class GetTaskRefused(HttpCoordinatorError):
    """20002: get_task refused (internal errors are masked as `coordinator internal error`)."""

    code_value = ErrCode.GET_TASK_FAILURE


class TaskAlreadyAssigned(GetTaskRefused):
    """The key already holds an assigned task (v4.1.33+); it is freed by a submit or timeout."""


class ProverBlocked(GetTaskRefused):
    permanent = True


class ProverVersionRejected(GetTaskRefused):
    """Version below the minimum or not the coordinator's circuit version."""

    permanent = True


class VkRejected(GetTaskRefused):
    permanent = True


class HardForkRejected(GetTaskRefused):
    """`wrong hard fork name` / `can't get vk for hard fork` (H2 fork map)."""

    permanent = True


class NoPublicKey(GetTaskRefused):
    """The token carries no public key (a challenge token, or a garbage login signature)."""


class NoTaskAvailable(HttpCoordinatorError):
    """20004 `get empty prover task`: the normal "nothing now, poll again" answer."""

    code_value = ErrCode.EMPTY_PROOF_DATA


# -- submit_proof (20003) ----------------------------------------------------------------

class ProofNotAccepted(HttpCoordinatorError):
    code_value = ErrCode.HANDLE_ZK_PROOF_FAILURE


class SubmitTaskNotFound(ProofNotAccepted):
    """`get none prover task for the proof`: no (uuid, pk) row; final unless the key changed."""

    permanent = True


class AlreadySubmitted(ProofNotAccepted):
    """`prove task cannot submit proof twice`: repeat, after a failure report, or late."""

    permanent = True


class FailureReportAcknowledged(ProofNotAccepted):
    """`proof msg status not ok`: the NORMAL reply to a failure report (status != 0)."""

    permanent = True


class AlreadyVerified(ProofNotAccepted):
    """`chunk/batch have proved and verified success` (another prover was first)."""

    permanent = True


class InvalidProof(ProofNotAccepted):
    """The verifier rejected the proof or failed on it."""

    permanent = True


class HardForkUnknown(ProofNotAccepted):
    """`failed to get hard fork name`."""


class CoordinatorInternal(ProofNotAccepted):
    """`coordinator internal error`: a DB failure closing the task; retry."""


# -- auth (50000 / 50001) -------------------------------------------------------------------

class AuthError(HttpCoordinatorError):
    code_value = ErrCode.JWT_COMMON


class TokenExpired(AuthError):
    """50001 `token is expired` (challenge or login JWT): fetch a challenge and log in again."""

    code_value = ErrCode.JWT_TOKEN_EXPIRED


class TokenMissing(AuthError):
    """`cookie token is empty`: no or malformed Authorization header."""


class TokenInvalid(AuthError):
    """`signature is invalid`, malformed tokens."""


class LoginVerifyFailure(AuthError):
    """H3/H4 `auth message verify failure`: the RLP layout or key does not match."""

    permanent = True


class LoginVersionRejected(AuthError):
    """Version below the minimum or not a configured `min_prover_version` prefix."""

    permanent = True


class LoginVkRejected(AuthError):
    permanent = True


class InvalidProviderType(AuthError):
    permanent = True


class ChallengeMismatch(AuthError):
    """`check challenge failure for the not equal challenge string`."""


class ChallengeReused(AuthError):
    """`... have been used`: the challenge was already spent; fetch a new one."""


class MissingLoginField(AuthError):
    """`missing the public_key, err:<binding error>`: a required login field is empty."""

    permanent = True


# (errcode, lowercased substring, class) in match order; the first hit wins.
_TEXT_RULES: tuple[tuple[int, str, type[HttpCoordinatorError]], ...] = (
    (20001, "proof invalid", ProofUnparsable),
    (20001, "wrong proof type", WrongProofType),
    (20002, "is already assigned a task", TaskAlreadyAssigned),
    (20002, "is blocked from fetching tasks", ProverBlocked),
    (20002, "incompatible prover version", ProverVersionRejected),
    (20002, "incompatible vk", VkRejected),
    (20002, "wrong hard fork name", HardForkRejected),
    (20002, "can't get vk for hard fork", HardForkRejected),
    (20002, "get public key from contex", NoPublicKey),  # "contex" (sic, v4.1.1) and "context"
    (20003, "get none prover task for the proof", SubmitTaskNotFound),
    (20003, "cannot submit proof twice", AlreadySubmitted),
    (20003, "proof msg status not ok", FailureReportAcknowledged),
    (20003, "have proved and verified success", AlreadyVerified),
    (20003, "verification failed", InvalidProof),
    (20003, "invalid proof", InvalidProof),
    (20003, "failed to get hard fork name", HardForkUnknown),
    (20003, "coordinator internal error", CoordinatorInternal),
    (20003, "get public key from contex", NoPublicKey),
    (20003, "handle zk proof failure, err:invalid character", ProofUnparsable),
    (20003, "handle zk proof failure, err:json:", ProofUnparsable),
    (20003, "handle zk proof failure, err:unexpected end of json", ProofUnparsable),
    (50000, "cookie token is empty", TokenMissing),
    (50000, "signature is invalid", TokenInvalid),
    (50000, "token contains an invalid number of segments", TokenInvalid),
    (50000, "auth message verify failure", LoginVerifyFailure),
    (50000, "incompatible prover version", LoginVersionRejected),
    (50000, "prover hard name failure", LoginVersionRejected),
    (50000, "incompatible vk", LoginVkRejected),
    (50000, "invalid prover provider type", InvalidProviderType),
    (50000, "not equal challenge string", ChallengeMismatch),
    (50000, "have been used", ChallengeReused),
    (50000, "missing the public_key", MissingLoginField),
)

_BY_CODE: dict[int, type[HttpCoordinatorError]] = {
    ErrCode.INTERNAL_SERVER_ERROR: InternalServerError,
    ErrCode.PARAMETER_INVALID: ParameterInvalid,
    ErrCode.GET_TASK_FAILURE: GetTaskRefused,
    ErrCode.HANDLE_ZK_PROOF_FAILURE: ProofNotAccepted,
    ErrCode.EMPTY_PROOF_DATA: NoTaskAvailable,
    ErrCode.JWT_COMMON: AuthError,
    ErrCode.JWT_TOKEN_EXPIRED: TokenExpired,
}


def error_class(errcode: int, errmsg: str) -> type[HttpCoordinatorError]:
    folded = errmsg.lower()
    for code, needle, cls in _TEXT_RULES:
        if code == errcode and needle in folded:
            return cls
    return _BY_CODE.get(errcode, HttpCoordinatorError)


def error_for(endpoint: str, errcode: int, errmsg: str) -> HttpCoordinatorError:
    """The exception for a non-zero envelope of `endpoint` (e.g. ``get_task``)."""
    return error_class(errcode, errmsg)(endpoint, errcode, errmsg)
