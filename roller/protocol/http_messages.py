"""Messages of the HTTP + JWT coordinator generations H1..H4 (spec coordinator-http-protocol).

Each message is a frozen, validated dataclass that knows its generation, so ``to_json``
writes exactly the members that generation's Go struct has (Go member order, the spec's
optional fields omitted when empty) and ``from_json`` decodes like Go's encoding/json
(case-insensitive names, unknown members ignored, ``null`` = zero value). Bad values raise
WireFormatError naming the field path.

Login hashing (spec 3): keccak256 of the go-ethereum RLP list of the Go struct fields in
declaration order; the layout differs per generation and sub-step:

- H1 (and H2 with no fork name, unless ``h2_always_four``): ``[name, version, challenge]``
- H2 with a fork name (always at v4.3.86..88): ``[name, version, challenge, hard_fork_name]``
- H3: ``[challenge, version, name, prover_types(BYTES), vks(list)]``
- H4: ``[challenge, version, name, provider_type(uint), prover_types(BYTES), vks(list)]``

Pitfall: ``prover_types`` is ``[]ProverType`` with a uint8 element and no RLP encoder, so
go-ethereum writes it as a byte string (``[1,2]`` -> ``820102``), not as a list of ints.

Failure model: pure values; nothing here does I/O. Envelope errors become the classes of
roller.protocol.http_errors via ``Envelope.raise_for_error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Self

import rlp
from eth_account.signers.local import LocalAccount
from eth_keys.main import lazy_key_api as keys
from eth_utils.crypto import keccak

from roller.errors import WireFormatError
from roller.protocol import signing
from roller.protocol.encoding import (
    UINT8_MAX,
    UINT64_MAX,
    b64encode_go,
    check_uint,
    decode_bytes,
    decode_list,
    decode_str,
    decode_uint,
    go_dumps,
    join,
    json_type_name,
    object_members,
    parse_hash,
)
from roller.protocol.http_enums import (
    FailureType,
    Generation,
    ProofStatus,
    TaskType,
)
from roller.protocol.http_errors import ErrCode, error_for
from roller.protocol.http_proofs import decode_value
from roller.protocol.messages import (  # the same rules as the WS messages
    AggProof,
    ProveType,
    TaskMsg,
    _check_str,
    _loads,
)

_ROOT = "$"
INT64_MAX = 0x7FFF_FFFF_FFFF_FFFF


# The task_data member holding a task's sub-proofs (spec 5.3, 5.4).
_SUB_PROOFS = {TaskType.BATCH: "chunk_proofs", TaskType.BUNDLE: "batch_proofs"}


def _check_strs(values: Any, path: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, tuple | list):
        raise WireFormatError(path, f"expected a sequence of str, got {type(values).__name__}")
    for i, v in enumerate(values):
        _check_str(v, f"{path}[{i}]")
    return tuple(values)


def _check_uints(values: Any, path: str, maximum: int) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, tuple | list):
        raise WireFormatError(path, f"expected a sequence of int, got {type(values).__name__}")
    for i, v in enumerate(values):
        check_uint(v, f"{path}[{i}]", maximum)
    return tuple(int(v) for v in values)


def _generation(value: Any, path: str = "generation") -> Generation:
    try:
        return Generation(value)
    except ValueError as exc:
        raise WireFormatError(path, f"unknown generation {value!r}") from exc


def _decode_strs(value: Any, path: str) -> tuple[str, ...]:
    return tuple(decode_str(v, p) for p, v in decode_list(value, path))


def _decode_prover_types(value: Any, path: str) -> tuple[int, ...]:
    # A []uint8-kinded slice: Go accepts a JSON array of numbers or a base64 string.
    return tuple(decode_bytes(value, path))


class _Wire:
    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def dumps(self) -> str:
        return go_dumps(self.to_json())


# -- envelope -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Envelope(_Wire):
    """``{"errcode": int, "errmsg": string, "data": object|null}``, always HTTP 200."""

    errcode: int
    errmsg: str
    data: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.errcode, bool) or not isinstance(self.errcode, int):
            raise WireFormatError("errcode", f"expected int, got {type(self.errcode).__name__}")
        _check_str(self.errmsg, "errmsg")

    def to_json(self) -> dict[str, Any]:
        return {"errcode": int(self.errcode), "errmsg": self.errmsg, "data": self.data}

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> Self:
        m = object_members(value, path or _ROOT, ("errcode", "errmsg", "data"))
        if "errcode" not in m:
            raise WireFormatError(join(path, "errcode"), "missing")
        code = m["errcode"]
        if isinstance(code, bool) or not isinstance(code, int):
            raise WireFormatError(join(path, "errcode"),
                                  f"expected integer, got {json_type_name(code)}")
        return cls(code, decode_str(m.get("errmsg"), join(path, "errmsg")), m.get("data"))

    @classmethod
    def loads(cls, text: str | bytes) -> Self:
        return cls.from_json(_loads(text))

    @property
    def ok(self) -> bool:
        return self.errcode == ErrCode.SUCCESS

    def raise_for_error(self, endpoint: str) -> None:
        if not self.ok:
            raise error_for(endpoint, self.errcode, self.errmsg)


# -- challenge and login --------------------------------------------------------------------

@dataclass(frozen=True)
class TokenResponse(_Wire):
    """`data` of /challenge and /login: ``{"time": <Go time>, "token": <JWT>}``."""

    time: str
    token: str = field(repr=False)  # never in reprs or logs

    def __post_init__(self) -> None:
        _check_str(self.time, "time")
        _check_str(self.token, "token")
        if not self.token:
            raise WireFormatError("token", "empty token")

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "token": self.token}

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> Self:
        m = object_members(value, path or _ROOT, ("time", "token"))
        return cls(decode_str(m.get("time"), join(path, "time")),
                   decode_str(m.get("token"), join(path, "token")))


@dataclass(frozen=True)
class LoginMessage(_Wire):
    """The signed login message; which fields count depends on ``generation``."""

    generation: Generation
    challenge: str = field(repr=False)
    prover_name: str
    prover_version: str
    hard_fork_name: str = ""  # H2 only
    prover_types: tuple[int, ...] = ()  # H3+
    vks: tuple[str, ...] = ()  # H3+
    prover_provider_type: int = 0  # H4
    h2_always_four: bool = False  # v4.3.86..88: 4-field RLP even with an empty fork name

    def __post_init__(self) -> None:
        object.__setattr__(self, "generation", _generation(self.generation))
        for name in ("challenge", "prover_name", "prover_version", "hard_fork_name"):
            _check_str(getattr(self, name), name)
        object.__setattr__(self, "prover_types",
                           _check_uints(self.prover_types, "prover_types", UINT8_MAX))
        object.__setattr__(self, "vks", _check_strs(self.vks, "vks"))
        check_uint(self.prover_provider_type, "prover_provider_type", UINT8_MAX)
        gen = self.generation
        if self.hard_fork_name and gen != Generation.H2:
            raise WireFormatError("hard_fork_name", f"not part of the {gen} login")
        if (self.prover_types or self.vks) and gen.rank < 3:
            raise WireFormatError("prover_types", f"not part of the {gen} login")
        if self.prover_provider_type and gen != Generation.H4:
            raise WireFormatError("prover_provider_type", f"not part of the {gen} login")

    def rlp_items(self) -> list[Any]:
        name, version = self.prover_name.encode(), self.prover_version.encode()
        challenge = self.challenge.encode()
        gen = self.generation
        if gen == Generation.H1:
            return [name, version, challenge]
        if gen == Generation.H2:
            if self.hard_fork_name or self.h2_always_four:
                return [name, version, challenge, self.hard_fork_name.encode()]
            return [name, version, challenge]
        types = bytes(self.prover_types)  # byte string, not a list (module docstring)
        vks = [vk.encode() for vk in self.vks]
        if gen == Generation.H3:
            return [challenge, version, name, types, vks]
        return [challenge, version, name, self.prover_provider_type, types, vks]

    def hash(self) -> bytes:
        return keccak(rlp.encode(self.rlp_items()))

    def to_json(self) -> dict[str, Any]:
        gen = self.generation
        if gen == Generation.H1:
            return {"challenge": self.challenge, "prover_name": self.prover_name,
                    "prover_version": self.prover_version}
        out: dict[str, Any] = {"challenge": self.challenge,
                               "prover_version": self.prover_version,
                               "prover_name": self.prover_name}
        if gen == Generation.H2:
            if self.hard_fork_name:
                out["hard_fork_name"] = self.hard_fork_name
            return out
        if gen == Generation.H4:
            out["prover_provider_type"] = self.prover_provider_type
        out["prover_types"] = list(self.prover_types)  # numbers, as the SDK sends them
        out["vks"] = list(self.vks)
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *,
                  generation: Generation = Generation.H1) -> Self:
        names = ("challenge", "prover_name", "prover_version", "hard_fork_name",
                 "prover_types", "vks", "prover_provider_type")
        m = object_members(value, path or _ROOT, names)
        rank = Generation(generation).rank
        return cls(
            generation=generation,
            challenge=decode_str(m.get("challenge"), join(path, "challenge")),
            prover_name=decode_str(m.get("prover_name"), join(path, "prover_name")),
            prover_version=decode_str(m.get("prover_version"), join(path, "prover_version")),
            hard_fork_name=(decode_str(m.get("hard_fork_name"), join(path, "hard_fork_name"))
                            if generation == Generation.H2 else ""),
            prover_types=(_decode_prover_types(m.get("prover_types"),
                                               join(path, "prover_types"))
                          if rank >= 3 else ()),
            vks=_decode_strs(m.get("vks"), join(path, "vks")) if rank >= 3 else (),
            prover_provider_type=(decode_uint(m.get("prover_provider_type"),
                                              join(path, "prover_provider_type"), UINT8_MAX)
                                  if rank >= 4 else 0),
        )


def compressed_pk(account: LocalAccount) -> str:
    """66 lowercase hex characters, no 0x (spec 0.4)."""
    return keys.PrivateKey(account.key).public_key.to_compressed_bytes().hex()


@dataclass(frozen=True)
class LoginRequest(_Wire):
    """``{"message": ..., "public_key": pk (H3+), "signature": "0x..."}``."""

    message: LoginMessage
    signature: str
    public_key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.message, LoginMessage):
            raise WireFormatError("message", "expected LoginMessage")
        _check_str(self.signature, "signature")
        _check_str(self.public_key, "public_key")
        if self.public_key.startswith("0x"):
            raise WireFormatError("public_key", "must be hex without 0x (hex.DecodeString)")

    @classmethod
    def signed(cls, message: LoginMessage, account: LocalAccount) -> LoginRequest:
        pk = compressed_pk(account) if message.generation.rank >= 3 else ""
        return cls(message, signing.sign_hash(account, message.hash()), pk)

    def recover_pk(self) -> str:
        return signing.recover_pk(self.message.hash(), self.signature)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message.to_json()}
        if self.message.generation.rank >= 3:
            out["public_key"] = self.public_key
        out["signature"] = self.signature
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *,
                  generation: Generation = Generation.H1) -> Self:
        m = object_members(value, path or _ROOT, ("message", "public_key", "signature"))
        if m.get("message") is None:
            raise WireFormatError(join(path, "message"), "required object is missing or null")
        return cls(
            LoginMessage.from_json(m["message"], join(path, "message"), generation=generation),
            decode_str(m.get("signature"), join(path, "signature")),
            decode_str(m.get("public_key"), join(path, "public_key")),
        )


# -- get_task -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GetTaskRequest(_Wire):
    """H1/H2: one ``task_type`` (0 = random chunk/batch); H3+: ``task_types`` (empty = all)."""

    generation: Generation
    prover_height: int
    task_type: int = 0  # H1/H2
    task_types: tuple[int, ...] = ()  # H3+
    vk: str = ""  # H1 v4.1.96+/H2 single-circuit path; omitted when empty (mock builds)
    vks: tuple[str, ...] = ()  # H2 v4.4.10+: two entries when present
    hard_fork_name: str = ""  # H2 v4.3.76..85 only
    universal: bool = False  # H4
    task_id: str = ""  # H4 fetch-one

    def __post_init__(self) -> None:
        gen = _generation(self.generation)
        object.__setattr__(self, "generation", gen)
        # H1's prover_height is a Go int; later ones are uint64 (spec 1, JSON decoding).
        check_uint(self.prover_height, "prover_height", INT64_MAX if gen.rank == 1 else UINT64_MAX)
        # Go ints: an unknown type is the coordinator's 20001 `wrong proof type`, not ours.
        check_uint(self.task_type, "task_type", UINT8_MAX)
        object.__setattr__(self, "task_types",
                           _check_uints(self.task_types, "task_types", UINT8_MAX))
        object.__setattr__(self, "vks", _check_strs(self.vks, "vks"))
        for name in ("vk", "hard_fork_name", "task_id"):
            _check_str(getattr(self, name), name)
        if gen.rank >= 3 and self.task_type:
            raise WireFormatError("task_type", f"{gen} takes task_types")
        if gen.rank < 3 and self.task_types:
            raise WireFormatError("task_types", f"{gen} takes one task_type")
        if self.vks and len(self.vks) != 2:
            raise WireFormatError("vks", "must hold exactly 2 entries when present")
        if gen == Generation.H1 and self.prover_height == 0:
            # H1 binds prover_height `required`: 0 is refused with 20001.
            raise WireFormatError("prover_height", "required (non-zero) in http-h1")

    def to_json(self) -> dict[str, Any]:
        gen = self.generation
        out: dict[str, Any] = {"prover_height": int(self.prover_height)}
        if gen.rank < 3:
            out["task_type"] = int(self.task_type)
            if self.vk:
                out["vk"] = self.vk
            if self.vks and gen == Generation.H2:
                out["vks"] = list(self.vks)
            if self.hard_fork_name and gen == Generation.H2:
                out["hard_fork_name"] = self.hard_fork_name
            return out
        out["task_types"] = list(self.task_types)
        if gen == Generation.H4:
            out["universal"] = bool(self.universal)
            if self.task_id:
                out["task_id"] = self.task_id
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *,
                  generation: Generation = Generation.H1) -> Self:
        names = ("prover_height", "task_type", "task_types", "vk", "vks", "hard_fork_name",
                 "universal", "task_id")
        m = object_members(value, path or _ROOT, names)
        rank = Generation(generation).rank
        universal = m.get("universal")
        if universal is not None and not isinstance(universal, bool):
            raise WireFormatError(join(path, "universal"),
                                  f"expected bool, got {json_type_name(universal)}")
        return cls(
            generation=generation,
            prover_height=decode_uint(m.get("prover_height"), join(path, "prover_height"),
                                      INT64_MAX if rank == 1 else UINT64_MAX),
            task_type=(decode_uint(m.get("task_type"), join(path, "task_type"), UINT8_MAX)
                       if rank < 3 else 0),
            task_types=(tuple(decode_uint(v, p, UINT8_MAX)
                              for p, v in decode_list(m.get("task_types"),
                                                      join(path, "task_types")))
                        if rank >= 3 else ()),
            vk=decode_str(m.get("vk"), join(path, "vk")) if rank < 3 else "",
            vks=_decode_strs(m.get("vks"), join(path, "vks")) if rank == 2 else (),
            hard_fork_name=(decode_str(m.get("hard_fork_name"), join(path, "hard_fork_name"))
                            if rank == 2 else ""),
            universal=bool(universal) if rank >= 4 else False,
            task_id=decode_str(m.get("task_id"), join(path, "task_id")) if rank >= 4 else "",
        )


@dataclass(frozen=True)
class GetTaskResponse(_Wire):
    """`GetTaskSchema`. ``task_data`` stays the coordinator's JSON text, opaque except for
    chunk ``block_hashes`` (see ``block_hashes()``). A bundle ``task_id`` has no 0x."""

    generation: Generation
    task_id: str
    task_type: int
    task_data: str
    uuid: str = ""  # v4.2.0+
    hard_fork_name: str = ""  # v4.4.10+

    def __post_init__(self) -> None:
        object.__setattr__(self, "generation", _generation(self.generation))
        for name in ("task_id", "task_data", "uuid", "hard_fork_name"):
            _check_str(getattr(self, name), name)
        check_uint(self.task_type, "task_type", UINT8_MAX)
        if self.task_type not in (TaskType.CHUNK, TaskType.BATCH, TaskType.BUNDLE):
            raise WireFormatError("task_type", f"unknown task type {self.task_type}")
        if self.task_type == TaskType.BUNDLE and self.generation.rank < 3:
            raise WireFormatError("task_type", f"bundle tasks do not exist in {self.generation}")
        if not self.task_id:
            raise WireFormatError("task_id", "empty task id")
        if self.generation.rank >= 3 and not self.uuid:
            raise WireFormatError("uuid", f"required in {self.generation} (submission key)")

    @property
    def key(self) -> str:
        """The id a roller keys this assignment by: the uuid, else (v4.1.x) the task id."""
        return self.uuid or self.task_id

    def data_json(self) -> Any:
        try:
            return json.loads(self.task_data)
        except ValueError as exc:
            # H4 mock universal data is the literal `UniversalTask data is not parsed`.
            raise WireFormatError("task_data", f"not JSON: {exc}") from exc

    def block_hashes(self) -> tuple[str, ...]:
        """A chunk task's block hashes (canonical lowercase 0x form)."""
        if self.task_type != TaskType.CHUNK:
            raise WireFormatError("task_type", "only chunk tasks carry block hashes")
        m = object_members(self.data_json(), "task_data", ("block_hashes",))
        path = "task_data.block_hashes"
        return tuple(parse_hash(h, p) for p, h in decode_list(m.get("block_hashes"), path))

    def sub_proofs(self) -> tuple[AggProof, ...]:
        """A batch task's chunk proofs or a bundle task's batch proofs, in task order (spec
        5.3, 5.4); the other members of ``task_data`` stay in it, opaque."""
        member = _SUB_PROOFS.get(TaskType(self.task_type))
        if member is None:
            raise WireFormatError("task_type", "only batch and bundle tasks carry sub-proofs")
        m = object_members(self.data_json(), "task_data", (member,))
        path = f"task_data.{member}"
        # They come back in the coordinator's Go struct shape (spec 5.3), decoded per generation
        # with what the struct drops (final pair, block count) re-derived from the instance.
        sub_type = TaskType.CHUNK if self.task_type == TaskType.BATCH else TaskType.BATCH
        return tuple(decode_value(self.generation, sub_type, v, p)
                     for p, v in decode_list(m.get(member), path))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.uuid or self.generation.rank >= 2:
            out["uuid"] = self.uuid
        out.update(task_id=self.task_id, task_type=int(self.task_type), task_data=self.task_data)
        if self.generation.rank >= 2:
            out["hard_fork_name"] = self.hard_fork_name
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *,
                  generation: Generation = Generation.H1) -> Self:
        names = ("uuid", "task_id", "task_type", "task_data", "hard_fork_name")
        m = object_members(value, path or _ROOT, names)
        return cls(
            generation=generation,
            task_id=decode_str(m.get("task_id"), join(path, "task_id")),
            task_type=decode_uint(m.get("task_type"), join(path, "task_type"), UINT8_MAX),
            task_data=decode_str(m.get("task_data"), join(path, "task_data")),
            uuid=decode_str(m.get("uuid"), join(path, "uuid")),
            hard_fork_name=decode_str(m.get("hard_fork_name"), join(path, "hard_fork_name")),
        )


# -- submit_proof ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SubmitProofRequest(_Wire):
    """``proof`` is JSON TEXT (a string holding JSON). A failure report sends ``"null"``,
    or ``"{}"`` in H1 where v4.1.0..68 unmarshal it even when status != 0 (spec 6.1)."""

    generation: Generation
    task_id: str
    task_type: int
    status: int
    proof: str
    uuid: str = ""
    failure_type: int = 0
    failure_msg: str = ""
    hard_fork_name: str = ""  # H2 v4.4.10+
    universal: bool = False  # H4

    def __post_init__(self) -> None:
        gen = _generation(self.generation)
        object.__setattr__(self, "generation", gen)
        for name in ("task_id", "proof", "uuid", "failure_msg", "hard_fork_name"):
            _check_str(getattr(self, name), name)
        check_uint(self.task_type, "task_type", UINT8_MAX)
        if self.task_type == 0:
            raise WireFormatError("task_type", "required (non-zero)")
        check_uint(self.status, "status", 1)
        check_uint(self.failure_type, "failure_type", UINT8_MAX)
        if not self.task_id:
            raise WireFormatError("task_id", "required")
        if gen.rank >= 3 and not self.uuid:
            raise WireFormatError("uuid", f"required in {gen}: the lookup is (uuid, pk)")
        try:
            json.loads(self.proof)
        except ValueError as exc:
            raise WireFormatError("proof", f"must be JSON text: {exc}") from exc

    @classmethod
    def failure(cls, task: GetTaskResponse, message: str,
                failure_type: int = FailureType.NO_PANIC) -> SubmitProofRequest:
        gen = task.generation
        return cls(gen, task.task_id, task.task_type, ProofStatus.ERROR,
                   "{}" if gen == Generation.H1 else "null", uuid=task.uuid,
                   failure_type=failure_type, failure_msg=message,
                   hard_fork_name=task.hard_fork_name if gen == Generation.H2 else "",
                   universal=gen == Generation.H4)

    @classmethod
    def success(cls, task: GetTaskResponse, proof_json: str) -> SubmitProofRequest:
        gen = task.generation
        return cls(gen, task.task_id, task.task_type, ProofStatus.OK, proof_json,
                   uuid=task.uuid,
                   hard_fork_name=task.hard_fork_name if gen == Generation.H2 else "",
                   universal=gen == Generation.H4)

    def to_json(self) -> dict[str, Any]:
        gen = self.generation
        out: dict[str, Any] = {}
        if self.uuid:
            out["uuid"] = self.uuid
        out.update(task_id=self.task_id, task_type=int(self.task_type),
                   status=int(self.status), proof=self.proof)
        if self.status != ProofStatus.OK:
            out["failure_type"] = int(self.failure_type)
            out["failure_msg"] = self.failure_msg
        if gen == Generation.H2 and self.hard_fork_name:
            out["hard_fork_name"] = self.hard_fork_name
        if gen == Generation.H4:
            out["universal"] = bool(self.universal)
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *,
                  generation: Generation = Generation.H1) -> Self:
        names = ("uuid", "task_id", "task_type", "status", "proof", "failure_type",
                 "failure_msg", "hard_fork_name", "universal")
        m = object_members(value, path or _ROOT, names)
        rank = Generation(generation).rank
        return cls(
            generation=generation,
            task_id=decode_str(m.get("task_id"), join(path, "task_id")),
            task_type=decode_uint(m.get("task_type"), join(path, "task_type"), UINT8_MAX),
            status=decode_uint(m.get("status"), join(path, "status"), 1),
            proof=decode_str(m.get("proof"), join(path, "proof")),
            uuid=decode_str(m.get("uuid"), join(path, "uuid")),
            failure_type=decode_uint(m.get("failure_type"), join(path, "failure_type"),
                                     UINT8_MAX),
            failure_msg=decode_str(m.get("failure_msg"), join(path, "failure_msg")),
            hard_fork_name=(decode_str(m.get("hard_fork_name"), join(path, "hard_fork_name"))
                            if rank == 2 else ""),
            universal=m.get("universal") is True and rank >= 4,
        )


# -- proof payloads ---------------------------------------------------------------------------

def agg_proof_to_json(proof: AggProof) -> str:
    """LEGACY: the roller's AggProof with the HTTP member names (`instance` -> `instances`) and
    ``final_pair``/``block_count`` as extra members. A real coordinator's Go struct drops those
    two (and H4's has none of these members), so a batch served with such chunk proofs cannot
    be proved (issue 22). Answers use roller.protocol.http_proofs.encode_proof; this stays for
    the test that shows the old shape failing."""
    out: dict[str, Any] = {}
    for name, data in (("proof", proof.proof), ("instances", proof.instance),
                       ("vk", proof.vk), ("final_pair", proof.final_pair)):
        out[name] = b64encode_go(data) if data else None
    out["block_count"] = int(proof.block_count)
    return go_dumps(out)


def agg_proof_from_json(text: str, path: str = "proof") -> AggProof:
    """Inverse of ``agg_proof_to_json``; any chunk/batch/bundle proof JSON decodes (absent
    members are empty), like the Go struct unmarshal the mock verifier relies on."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise WireFormatError(path, f"not JSON: {exc}") from exc
    return agg_proof_from_value(value, path)


def agg_proof_from_value(value: Any, path: str = "proof") -> AggProof:
    """LEGACY ``agg_proof_from_json`` for an already decoded proof object: takes final_pair and
    block_count as sent, re-deriving nothing (see roller.protocol.http_proofs.decode_value)."""
    if value is None:
        value = {}
    m = object_members(value, path, ("proof", "instances", "vk", "final_pair", "block_count"))
    return AggProof(
        proof=decode_bytes(m.get("proof"), join(path, "proof")),
        instance=decode_bytes(m.get("instances"), join(path, "instances")),
        final_pair=decode_bytes(m.get("final_pair"), join(path, "final_pair")),
        vk=decode_bytes(m.get("vk"), join(path, "vk")),
        block_count=decode_uint(m.get("block_count"), join(path, "block_count"), UINT64_MAX),
    )


# -- what the listener and ledger see ---------------------------------------------------------

_PROVE_TYPE = {TaskType.CHUNK: ProveType.BASIC, TaskType.BATCH: ProveType.AGGREGATOR,
               TaskType.BUNDLE: ProveType.BUNDLE}


def to_task_msg(task: GetTaskResponse, *, keep_undecodable: bool = False) -> TaskMsg:
    """The listener's TaskMsg for an HTTP task: id = the task (`task_id`, the hash), so the
    ledger keeps one record per task across the coordinator's assignments (H2+ give every
    dispatch a new uuid; a kept answer then goes to the new one); type 0 chunk / 1 batch /
    2 bundle, the chunk's block hashes or the batch/bundle's sub-proofs (what the worker
    proves from, as for a WS task), and the whole get_task answer in ``http_task`` (the
    current assignment's uuid, which the submission names; the rest of task_data rides
    along opaque).

    Task data that does not decode (sub-proofs in another shape, bad block hashes) raises
    WireFormatError naming the field; with ``keep_undecodable`` the task comes back without
    blocks or sub-proofs instead, so that it is recorded and answered (the worker finds the
    reason again with ``task_data_error``) rather than left assigned until it times out."""
    chunk = task.task_type == TaskType.CHUNK
    payload = {"generation": task.generation.value, **task.to_json()}
    try:
        hashes = task.block_hashes() if chunk else ()
        proofs = () if chunk else task.sub_proofs()
    except WireFormatError:
        if not keep_undecodable:
            raise
        hashes, proofs = (), ()
    return TaskMsg(id=task.task_id, type=_PROVE_TYPE[TaskType(task.task_type)],
                   block_hashes=hashes, sub_proofs=proofs, http_task=go_dumps(payload))


def task_data_error(task: TaskMsg) -> str | None:
    """Why a recorded HTTP task's data cannot be turned into prover inputs (the decoder's
    WireFormatError text, naming the field), or None: it can, or it is a WS task."""
    if not task.http_task:
        return None
    try:
        to_task_msg(from_task_msg(task))
    except WireFormatError as exc:
        return str(exc)
    return None


def task_generation(task: TaskMsg) -> str:
    """The HTTP generation a recorded task came from, else "ws" (a WS-era task)."""
    if not task.http_task:
        return "ws"
    try:
        value = json.loads(task.http_task)
    except ValueError:
        return "http"
    generation = value.get("generation") if isinstance(value, dict) else None
    return generation if isinstance(generation, str) else "http"


def from_task_msg(task: TaskMsg) -> GetTaskResponse:
    """The get_task answer a TaskMsg was made from (``to_task_msg``)."""
    if not task.http_task:
        raise WireFormatError("http_task", "not an HTTP-generation task (empty)")
    value = _loads(task.http_task)
    m = object_members(value, "http_task", ("generation",))
    gen = _generation(m.get("generation"), "http_task.generation")
    return GetTaskResponse.from_json(value, "http_task", generation=gen)
