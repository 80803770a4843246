"""The coordinator's wire messages (spec section 3) with Go-compatible JSON and RLP hashing.

JSON: ``to_json`` gives members in Go struct order with Go's ``omitempty`` rules; ``from_json``
decodes like Go's ``encoding/json`` (case-insensitive member names, unknown members ignored,
``null`` gives the zero value) and raises WireFormatError naming the field path.

Hashes: keccak256 of the RLP list of the struct fields in Go declaration order (spec 4.1);
JSON names and ``omitempty`` play no part.

Nil vs empty bytes: AggProof keeps absent/``null``/``""`` byte fields as ``b""`` and encodes
``b""`` as ``null`` (a nil Go slice). The coordinator decodes ``null`` and ``""`` to slices
that RLP-encode identically (0x80), so hashes are unaffected; ``null`` matches what the Go
mock prover sends. A ``null`` ProofDetail.proof (``None``) is distinct from an AggProof with
every field empty: the former hashes as an empty list 0xc0, the latter as c5 80 80 80 80 80.

Variants (spec section 8): ``WsVariant`` names the two WebSocket protocols. ws-2023-07
(e78099414) drops ``timestamp`` from the Identity (JSON and RLP) and numbers proof types
1 = chunk, 2 = batch. TaskMsg and ProofDetail always hold roller's own numbering
(ProveType: 0 chunk, 1 batch); their ``variant`` codec arguments map it to and from the
wire, so the JSON, the RLP hash and the signature carry the wire number while the ledger,
worker and listener see the same TaskMsg for both variants. Identity.roller_type is the
wire value (a registration may carry 2023-07's undefined type 0): build it with
``WsVariant.wire_type``. Failure model: a wire type a variant does not define
(2023-07: 0 undefined, 3 and up illegal) is a WireFormatError naming the field; the
default variant everywhere is ws-2023-06, whose mapping is the identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Self

import rlp
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from roller.errors import WireFormatError
from roller.protocol import signing
from roller.protocol.encoding import (
    UINT8_MAX,
    UINT32_MAX,
    UINT64_MAX,
    check_uint,
    decode_bytes,
    decode_list,
    decode_str,
    decode_uint,
    encode_bytes,
    go_dumps,
    join,
    object_members,
    parse_hash,
)

_ROOT = "$"


class ProveType(IntEnum):
    """`roller_type` / `type`: basic proves blocks (chunk), aggregator aggregates (batch)."""

    BASIC = 0
    AGGREGATOR = 1
    # Never on the WS wire: an HTTP-generation bundle task (H3+) as the listener sees it.
    BUNDLE = 2


# Task types a prover slot of each prove type proves: a batch prover also proves bundles
# (HTTP spec 5.1: prover type 2 covers batch and bundle tasks).
SLOT_TASK_TYPES: dict[int, tuple[int, ...]] = {
    ProveType.BASIC: (ProveType.BASIC,),
    ProveType.AGGREGATOR: (ProveType.AGGREGATOR, ProveType.BUNDLE),
}


def slot_proves(slot_prove_type: int, task_type: int) -> bool:
    """Whether a slot of `slot_prove_type` (0 chunk, 1 batch) proves a task of `task_type`."""
    return task_type in SLOT_TASK_TYPES.get(slot_prove_type, (slot_prove_type,))


class RespStatus(IntEnum):
    OK = 0
    ERROR = 1


class FailureClass(StrEnum):
    """Why a failure answer failed, which decides what the roller does with the task next
    (issue 22 item 6). Never a wire field: the report's text starts with ``prefix``, so the
    coordinator (and its operator's grep) sees the class while the wire bytes keep their
    shape, and the class is read back from the stored answer's text (``ProofDetail``).

    DETERMINISTIC: the same input fails the same way on this prover (sub-proofs that do not
    decode into prover inputs, the prover rejecting the input as invalid or unsupported):
    reported once, remembered for the identity, answered at once if handed out again.
    TRANSIENT: anything that may pass later (L2 node errors and rate limits, a lagging node's
    traces, worker and GPU faults, timeouts); also what an unmarked text is."""

    DETERMINISTIC = "deterministic"
    TRANSIENT = "transient"

    @property
    def prefix(self) -> str:
        return f"[{self.value}] "

    def reason(self, text: str) -> str:
        """``text`` as a failure report's reason, marked with this class (a mark it already
        carries is replaced, so a remembered report is sent again byte for byte)."""
        for member in FailureClass:
            if text.startswith(member.prefix):
                text = text[len(member.prefix):]
                break
        return self.prefix + text

    @classmethod
    def of(cls, reason: str) -> FailureClass:
        """The class a reason text is marked with; unmarked text (an older release's answer,
        another process's report) is transient."""
        for member in cls:
            if reason.startswith(member.prefix):
                return member
        return cls.TRANSIENT


class WsVariant(StrEnum):
    """The WebSocket coordinator protocol variant; the values are the config names."""

    WS_2023_06 = "ws-2023-06"  # a3c18b99a: spec sections 1-7
    WS_2023_07 = "ws-2023-07"  # e78099414: spec section 8

    @property
    def has_timestamp(self) -> bool:
        """Whether Identity carries `timestamp` (JSON and RLP)."""
        return self is WsVariant.WS_2023_06

    def wire_type(self, prove_type: int, field: str = "type") -> int:
        """The wire number of roller's task type (ProveType 0 chunk / 1 batch)."""
        if self is WsVariant.WS_2023_06:
            return prove_type
        if prove_type not in _TYPE_TO_0723:
            raise WireFormatError(field, f"task type {prove_type} has no {self.value} "
                                  "proof type (chunk and batch only)")
        return _TYPE_TO_0723[prove_type]

    def task_type(self, wire: int, field: str = "type") -> int:
        """Roller's task type for a wire number; WireFormatError if the variant has none."""
        if self is WsVariant.WS_2023_06:
            return wire
        if wire not in _TYPE_FROM_0723:
            name = "undefined" if wire == 0 else "illegal"
            raise WireFormatError(field, f"{name} proof type {wire} in {self.value} "
                                  "(1 = chunk, 2 = batch)")
        return _TYPE_FROM_0723[wire]


# Spec 8: ProofType 0 undefined, 1 chunk, 2 batch.
_TYPE_TO_0723 = {0: 1, 1: 2}
_TYPE_FROM_0723 = {1: 0, 2: 1}
_V0623 = WsVariant.WS_2023_06


def _check_str(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise WireFormatError(path, f"expected str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireFormatError(path, "string is not valid UTF-8 (lone surrogate)") from exc


def _check_bytes(value: Any, path: str) -> None:
    if not isinstance(value, bytes):
        raise WireFormatError(path, f"expected bytes, got {type(value).__name__}")


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireFormatError(_ROOT, f"invalid JSON: {exc}") from exc


class _Wire:
    """Shared JSON text helpers; subclasses provide to_json/from_json."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def dumps(self) -> str:
        """Compact JSON text as Go's json.Marshal writes it."""
        return go_dumps(self.to_json())

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> Self:
        raise NotImplementedError

    @classmethod
    def loads(cls, text: str | bytes) -> Self:
        """Parse JSON text and decode it; invalid JSON is a WireFormatError too."""
        return cls.from_json(_loads(text))


@dataclass(frozen=True)
class Identity(_Wire):
    """``roller_type`` is the variant's wire number (see the module docstring). In
    ws-2023-07 there is no timestamp: it must be 0 and is neither sent nor hashed."""

    name: str
    roller_type: int
    timestamp: int
    version: str
    token: str
    variant: WsVariant = _V0623

    _FIELDS = ("name", "roller_type", "timestamp", "version", "token")
    _FIELDS_0723 = ("name", "roller_type", "version", "token")

    def __post_init__(self) -> None:
        _check_str(self.name, "name")
        check_uint(self.roller_type, "roller_type", UINT8_MAX)
        check_uint(self.timestamp, "timestamp", UINT32_MAX)
        _check_str(self.version, "version")
        _check_str(self.token, "token")
        if not isinstance(self.variant, WsVariant):
            raise WireFormatError("variant", f"expected WsVariant, got {self.variant!r}")
        if not self.variant.has_timestamp and self.timestamp:
            # Refused rather than dropped: a caller setting it expects it to be signed.
            raise WireFormatError("timestamp", f"{self.variant.value} has no timestamp")

    def rlp_items(self) -> list[Any]:
        if not self.variant.has_timestamp:
            return [self.name.encode(), self.roller_type, self.version.encode(),
                    self.token.encode()]
        return [self.name.encode(), self.roller_type, self.timestamp,
                self.version.encode(), self.token.encode()]

    def hash(self) -> bytes:
        return keccak(rlp.encode(self.rlp_items()))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.roller_type:
            out["roller_type"] = int(self.roller_type)
        if self.variant.has_timestamp:
            out["timestamp"] = int(self.timestamp)
        out["version"] = self.version
        out["token"] = self.token
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *, variant: WsVariant = _V0623) -> Self:
        # 2023-07's struct has no timestamp member: Go ignores one sent anyway.
        fields = cls._FIELDS if variant.has_timestamp else cls._FIELDS_0723
        m = object_members(value, path or _ROOT, fields)
        return cls(
            name=decode_str(m.get("name"), join(path, "name")),
            roller_type=decode_uint(m.get("roller_type"), join(path, "roller_type"), UINT8_MAX),
            timestamp=decode_uint(m.get("timestamp"), join(path, "timestamp"), UINT32_MAX),
            version=decode_str(m.get("version"), join(path, "version")),
            token=decode_str(m.get("token"), join(path, "token")),
            variant=variant,
        )


@dataclass(frozen=True)
class AuthMsg(_Wire):
    """JSON ``{"message": Identity, "signature": "0x..."}``."""

    identity: Identity
    signature: str

    _FIELDS = ("message", "signature")

    def __post_init__(self) -> None:
        if not isinstance(self.identity, Identity):
            raise WireFormatError("message", "expected Identity")
        _check_str(self.signature, "signature")

    @property
    def variant(self) -> WsVariant:
        return self.identity.variant

    @classmethod
    def signed(cls, identity: Identity, account: LocalAccount) -> AuthMsg:
        return cls(identity=identity, signature=signing.sign_hash(account, identity.hash()))

    def recover_pk(self) -> str:
        return signing.recover_pk(self.identity.hash(), self.signature)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.identity.to_json(), "signature": self.signature}

    @classmethod
    def from_json(cls, value: Any, path: str = "", *, variant: WsVariant = _V0623) -> Self:
        m = object_members(value, path or _ROOT, cls._FIELDS)
        message_path = join(path, "message")
        # Go would decode a missing/null message to a nil pointer and crash the handler.
        if m.get("message") is None:
            raise WireFormatError(message_path, "required object is missing or null")
        return cls(
            identity=Identity.from_json(m["message"], message_path, variant=variant),
            signature=decode_str(m.get("signature"), join(path, "signature")),
        )


@dataclass(frozen=True)
class AggProof(_Wire):
    proof: bytes
    instance: bytes
    final_pair: bytes
    vk: bytes
    block_count: int

    _FIELDS = ("proof", "instance", "final_pair", "vk", "block_count")

    def __post_init__(self) -> None:
        for name in ("proof", "instance", "final_pair", "vk"):
            _check_bytes(getattr(self, name), name)
        check_uint(self.block_count, "block_count", UINT64_MAX)

    def rlp_items(self) -> list[Any]:
        return [self.proof, self.instance, self.final_pair, self.vk, self.block_count]

    def to_json(self) -> dict[str, Any]:
        return {
            "proof": encode_bytes(self.proof),
            "instance": encode_bytes(self.instance),
            "final_pair": encode_bytes(self.final_pair),
            "vk": encode_bytes(self.vk),
            "block_count": int(self.block_count),
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "") -> Self:
        m = object_members(value, path or _ROOT, cls._FIELDS)
        return cls(
            proof=decode_bytes(m.get("proof"), join(path, "proof")),
            instance=decode_bytes(m.get("instance"), join(path, "instance")),
            final_pair=decode_bytes(m.get("final_pair"), join(path, "final_pair")),
            vk=decode_bytes(m.get("vk"), join(path, "vk")),
            block_count=decode_uint(m.get("block_count"), join(path, "block_count"), UINT64_MAX),
        )


@dataclass(frozen=True)
class TaskMsg(_Wire):
    """A task notification. ``block_hashes`` are canonical lowercase ``0x`` hashes.

    ``http_task`` is empty for the WS protocol and then never written, so WS JSON round
    trips are unchanged. For an HTTP-generation task it holds the coordinator's get_task
    answer as JSON text (generation, uuid, task_id, task_type, task_data, hard_fork_name;
    see roller.protocol.http_messages.to_task_msg / from_task_msg), opaque here, needed
    again to submit."""

    id: str
    type: int
    block_hashes: tuple[str, ...]
    sub_proofs: tuple[AggProof, ...]
    http_task: str = ""

    _FIELDS = ("id", "type", "block_hashes", "sub_proofs", "http_task")

    def __post_init__(self) -> None:
        _check_str(self.id, "id")
        check_uint(self.type, "type", UINT8_MAX)
        if isinstance(self.block_hashes, str):
            raise WireFormatError("block_hashes", "expected a sequence of hashes, got str")
        hashes = tuple(parse_hash(h, f"block_hashes[{i}]") for i, h in enumerate(self.block_hashes))
        object.__setattr__(self, "block_hashes", hashes)
        proofs = tuple(self.sub_proofs)
        for i, p in enumerate(proofs):
            if not isinstance(p, AggProof):
                raise WireFormatError(f"sub_proofs[{i}]", "expected AggProof")
        object.__setattr__(self, "sub_proofs", proofs)
        _check_str(self.http_task, "http_task")

    def to_json(self, variant: WsVariant = _V0623) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        wire_type = variant.wire_type(self.type)
        if wire_type:
            out["type"] = wire_type
        if self.block_hashes:
            out["block_hashes"] = list(self.block_hashes)
        if self.sub_proofs:
            out["sub_proofs"] = [p.to_json() for p in self.sub_proofs]
        if self.http_task:
            out["http_task"] = self.http_task
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *, variant: WsVariant = _V0623) -> Self:
        m = object_members(value, path or _ROOT, cls._FIELDS)
        type_path = join(path, "type")
        hashes_path = join(path, "block_hashes")
        proofs_path = join(path, "sub_proofs")
        sub_proofs = []
        for p_path, item in decode_list(m.get("sub_proofs"), proofs_path):
            # Go would keep a nil *AggProof here; no coordinator sends one, so refuse it.
            if item is None:
                raise WireFormatError(p_path, "null sub-proof")
            sub_proofs.append(AggProof.from_json(item, p_path))
        return cls(
            id=decode_str(m.get("id"), join(path, "id")),
            type=variant.task_type(decode_uint(m.get("type"), type_path, UINT8_MAX), type_path),
            block_hashes=tuple(parse_hash(h, h_path)
                               for h_path, h in decode_list(m.get("block_hashes"), hashes_path)),
            sub_proofs=tuple(sub_proofs),
            http_task=decode_str(m.get("http_task"), join(path, "http_task")),
        )


@dataclass(frozen=True)
class ProofDetail(_Wire):
    """``proof`` None is JSON ``null`` (a nil pointer), hashed as the empty RLP list."""

    id: str
    type: int
    status: int
    proof: AggProof | None
    error: str

    _FIELDS = ("id", "type", "status", "proof", "error")

    def __post_init__(self) -> None:
        _check_str(self.id, "id")
        check_uint(self.type, "type", UINT8_MAX)
        check_uint(self.status, "status", UINT32_MAX)
        if self.proof is not None and not isinstance(self.proof, AggProof):
            raise WireFormatError("proof", "expected AggProof or None")
        _check_str(self.error, "error")

    @property
    def failure_class(self) -> FailureClass | None:
        """The class of a failure answer (read from its reason's prefix); None for a proof."""
        return None if self.status == RespStatus.OK else FailureClass.of(self.error)

    def rlp_items(self, variant: WsVariant = _V0623) -> list[Any]:
        proof = self.proof.rlp_items() if self.proof is not None else []
        return [self.id.encode(), variant.wire_type(self.type), self.status, proof,
                self.error.encode()]

    def hash(self, variant: WsVariant = _V0623) -> bytes:
        """keccak256 of the RLP with the variant's wire type: what the coordinator hashes."""
        return keccak(rlp.encode(self.rlp_items(variant)))

    def to_json(self, variant: WsVariant = _V0623) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        wire_type = variant.wire_type(self.type)
        if wire_type:
            out["type"] = wire_type
        out["status"] = int(self.status)
        out["proof"] = self.proof.to_json() if self.proof is not None else None
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, value: Any, path: str = "", *, variant: WsVariant = _V0623) -> Self:
        m = object_members(value, path or _ROOT, cls._FIELDS)
        proof_value = m.get("proof")
        type_path = join(path, "type")
        return cls(
            id=decode_str(m.get("id"), join(path, "id")),
            type=variant.task_type(decode_uint(m.get("type"), type_path, UINT8_MAX), type_path),
            status=decode_uint(m.get("status"), join(path, "status"), UINT32_MAX),
            proof=(None if proof_value is None
                   else AggProof.from_json(proof_value, join(path, "proof"))),
            error=decode_str(m.get("error"), join(path, "error")),
        )


@dataclass(frozen=True)
class ProofMsg(_Wire):
    """JSON ``{"zkProof": ProofDetail, "signature": "0x..."}``; the signature is over the
    detail's hash in ``variant`` (whose wire type it carries)."""

    detail: ProofDetail
    signature: str
    variant: WsVariant = _V0623

    _FIELDS = ("zkProof", "signature")

    def __post_init__(self) -> None:
        if not isinstance(self.detail, ProofDetail):
            raise WireFormatError("zkProof", "expected ProofDetail")
        _check_str(self.signature, "signature")
        if not isinstance(self.variant, WsVariant):
            raise WireFormatError("variant", f"expected WsVariant, got {self.variant!r}")

    @classmethod
    def signed(cls, detail: ProofDetail, account: LocalAccount,
               variant: WsVariant = _V0623) -> ProofMsg:
        return cls(detail=detail, signature=signing.sign_hash(account, detail.hash(variant)),
                   variant=variant)

    def recover_pk(self) -> str:
        return signing.recover_pk(self.detail.hash(self.variant), self.signature)

    def to_json(self) -> dict[str, Any]:
        return {"zkProof": self.detail.to_json(self.variant), "signature": self.signature}

    @classmethod
    def from_json(cls, value: Any, path: str = "", *, variant: WsVariant = _V0623) -> Self:
        m = object_members(value, path or _ROOT, cls._FIELDS)
        detail_path = join(path, "zkProof")
        # Go would decode a missing/null zkProof to a nil pointer and crash the handler.
        if m.get("zkProof") is None:
            raise WireFormatError(detail_path, "required object is missing or null")
        return cls(
            detail=ProofDetail.from_json(m["zkProof"], detail_path, variant=variant),
            signature=decode_str(m.get("signature"), join(path, "signature")),
            variant=variant,
        )
