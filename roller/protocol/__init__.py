"""Scroll coordinator wire protocol: messages, Go JSON rules, hashing and signing."""

from roller.protocol.messages import (
    AggProof,
    AuthMsg,
    Identity,
    ProofDetail,
    ProofMsg,
    ProveType,
    RespStatus,
    TaskMsg,
    WsVariant,
)
from roller.protocol.signing import recover_pk, sign_hash

__all__ = [
    "AggProof",
    "AuthMsg",
    "Identity",
    "ProofDetail",
    "ProofMsg",
    "ProveType",
    "RespStatus",
    "TaskMsg",
    "WsVariant",
    "recover_pk",
    "sign_hash",
]
