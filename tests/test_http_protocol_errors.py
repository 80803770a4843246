"""Every error code and text of the HTTP spec maps to one roller error class (sections 1.1,
2.2-2.4, 4.1, 6.3), with the permanent/retryable split a submitter needs."""

from __future__ import annotations

import pytest

from roller.errors import CoordinatorError, RollerError
from roller.protocol import http_errors as he
from roller.protocol.http_messages import Envelope

PK = "0324afcee4c0f906c71a562473da1f8448d6f6b0b2fa972759cd99a8838d923121"
FAIL = "handle zk proof failure, err:"
CASES: list[tuple[int, str, type[he.HttpCoordinatorError], bool]] = [
    (500, "inner l2geth failure, err:x", he.InternalServerError, False),
    (20001, "prover task parameter invalid, err:json: cannot unmarshal number -1 into Go "
            "struct field GetTaskParameter.prover_height of type uint64",
     he.ParameterInvalid, True),
    (20001, "unmarshal parameter chunk proof invalid, err:unexpected end of JSON input",
     he.ProofUnparsable, True),
    (20001, "parameter wrong proof type:illegal proof type: 9", he.WrongProofType, True),
    (20002, "return prover task err:check prover task parameter failed, error:prover with "
            f"publicKey {PK} is already assigned a task. ProverName: n, ProverVersion: v",
     he.TaskAlreadyAssigned, False),
    (20002, f"return prover task err:public key {PK} is blocked from fetching tasks",
     he.ProverBlocked, True),
    (20002, "return prover task err:incompatible prover version. please upgrade your prover",
     he.ProverVersionRejected, True),
    (20002, "return prover task err:incompatible vk. please check your params files",
     he.VkRejected, True),
    (20002, "return prover task err:wrong hard fork name", he.HardForkRejected, True),
    (20002, "return prover task err:can't get vk for hard fork:curie, vkMap:map[]",
     he.HardForkRejected, True),
    (20002, "return prover task err:check prover task parameter failed, error:get public key "
            "from context failed", he.NoPublicKey, False),
    (20002, "return prover task err:get public key from contex failed", he.NoPublicKey, False),
    (20002, "return prover task err:coordinator internal error", he.GetTaskRefused, False),
    (20004, "get empty prover task", he.NoTaskAvailable, False),
    (20003, FAIL + "validator failure get none prover task for the proof",
     he.SubmitTaskNotFound, True),
    (20003, FAIL + "validator failure prove task cannot submit proof twice",
     he.AlreadySubmitted, True),
    (20003, FAIL + "validator failure proof msg status not ok",
     he.FailureReportAcknowledged, True),
    (20003, FAIL + "validator failure chunk/batch have proved and verified success",
     he.AlreadyVerified, True),
    (20003, FAIL + "verification failed, verifier returns error", he.InvalidProof, True),
    (20003, FAIL + "verification succeeded, it's an invalid proof", he.InvalidProof, True),
    (20003, "verification succeeded and it's an invalid proof", he.InvalidProof, True),
    (20003, FAIL + "failed to get hard fork name", he.HardForkUnknown, False),
    (20003, FAIL + "coordinator internal error", he.CoordinatorInternal, False),
    (20003, FAIL + "invalid character 'h' in literal true (expecting 'r')",
     he.ProofUnparsable, True),
    (20003, "get public key from context failed", he.NoPublicKey, False),
    (50000, "cookie token is empty", he.TokenMissing, False),
    (50000, "signature is invalid", he.TokenInvalid, False),
    (50000, "token contains an invalid number of segments", he.TokenInvalid, False),
    (50000, "check the login parameter failure: auth message verify failure",
     he.LoginVerifyFailure, True),
    (50000, "check the login parameter failure: incompatible prover version. please upgrade "
            "your prover, minimum allowed version: v4.4.43, actual version: v4.4.42-x",
     he.LoginVersionRejected, True),
    (50000, "prover hard name failure:invalid prover prover_version:v4.4.44-x",
     he.LoginVersionRejected, True),
    (50000, "check the login parameter failure: incompatible vk. please check your params "
            "files or config files", he.LoginVkRejected, True),
    (50000, "check the login parameter failure: invalid prover provider type.",
     he.InvalidProviderType, True),
    (50000, "check challenge failure for the not equal challenge string",
     he.ChallengeMismatch, False),
    (50000, "login insert challenge string failure:the challenge string:eyj... have been used",
     he.ChallengeReused, False),
    (50000, "missing the public_key, err:key: 'loginparameter.message.challenge' error:field "
            "validation for 'challenge' failed on the 'required' tag",
     he.MissingLoginField, True),
    (50000, "something new", he.AuthError, False),
    (50001, "token is expired", he.TokenExpired, False),
    (12345, "unheard of", he.HttpCoordinatorError, False),
]


@pytest.mark.parametrize("code,text,cls,permanent", CASES,
                         ids=[f"{c[0]}-{c[2].__name__}" for c in CASES])
def test_mapping(code: int, text: str, cls: type[he.HttpCoordinatorError],
                 permanent: bool) -> None:
    err = he.error_for("endpoint", code, text)
    assert type(err) is cls
    assert err.permanent is permanent
    assert isinstance(err, CoordinatorError) and isinstance(err, RollerError)
    assert err.code == code and err.message == text and err.method == "endpoint"
    with pytest.raises(cls):
        Envelope(code, text).raise_for_error("endpoint")


def test_success_envelope_raises_nothing() -> None:
    Envelope(0, "", None).raise_for_error("get_task")


def test_every_errno_has_a_class() -> None:
    for code in he.ErrCode:
        if code != he.ErrCode.SUCCESS:
            assert he.error_class(code, "").code_value == code
