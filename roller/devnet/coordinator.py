"""The devnet coordinator: roller_* methods (spec 2) over the WebSocket JSON-RPC server.

`CoordinatorService` is the method table (the Go manager object, exposed under the
`roller` and `debug` namespaces); `WsServer` owns the listening socket, the Origin check
and the live connections so the devnet can drop or restart them.

Variant ws-2023-07 (spec 8, e78099414): the same methods under `roller` only, the Identity
without timestamp, proof types 1 = chunk and 2 = batch on the wire (mapped to the devnet's
own 0/1 at decoding, so sessions and tasks are numbered alike), the token error without
its period, and a submission checked against the assignment records rather than the live
pool (`SessionManager`, variant-aware, does that part).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response

from roller.devnet.pool import RollerNode, RollerPool, TokenCache
from roller.devnet.rpc import (
    Method,
    Param,
    RpcConnection,
    SubscriptionMethod,
    method_error,
)
from roller.devnet.sessions import SessionManager
from roller.errors import SignatureError, WireFormatError
from roller.protocol.encoding import Field, Struct, decode_string, decode_struct
from roller.protocol.messages import AggProof, Identity, ProofDetail, WsVariant
from roller.protocol.signing import recover_pk

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 157_286_400
NAMESPACES = ("roller", "debug")
# e78099414 registers only the `roller` namespace (spec 8).
NAMESPACES_0723 = ("roller",)
# A wire proof type 2023-07 does not define, as the devnet's sessions see it: it matches no
# task (Go keeps the number; no task row has it), so such a roller never gets work.
NO_TASK_TYPE = 0xFF

# The coordinator's message structs (scroll common/types/message) as Go's decoder sees
# them: member tags in declaration order and the Go type names its error texts quote.
IDENTITY = Struct(
    "message.Identity",
    (
        Field("name", "string", "string"),
        Field("roller_type", "uint", "message.ProveType", bits=8),
        Field("timestamp", "uint", "uint32", bits=32),
        Field("version", "string", "string"),
        Field("token", "string", "string"),
    ),
)
AUTH_MSG = Struct(
    "message.AuthMsg",
    (
        Field("message", "struct", "message.Identity", struct=IDENTITY),
        Field("signature", "string", "string"),
    ),
)
AGG_PROOF = Struct(
    "message.AggProof",
    (
        Field("proof", "bytes", "[]uint8"),
        Field("instance", "bytes", "[]uint8"),
        Field("final_pair", "bytes", "[]uint8"),
        Field("vk", "bytes", "[]uint8"),
        Field("block_count", "uint", "uint", bits=64),
    ),
)
PROOF_DETAIL = Struct(
    "message.ProofDetail",
    (
        Field("id", "string", "string"),
        Field("type", "uint", "message.ProveType", bits=8),
        Field("status", "uint", "message.RespStatus", bits=32),
        Field("proof", "struct", "message.AggProof", struct=AGG_PROOF),
        Field("error", "string", "string"),
    ),
)
PROOF_MSG = Struct(
    "message.ProofMsg",
    (
        Field("zkProof", "struct", "message.ProofDetail", struct=PROOF_DETAIL),
        Field("signature", "string", "string"),
    ),
)


def _for_0723(struct: Struct) -> Struct:
    """The e78099414 form of a message struct (spec 8): Identity without timestamp, Go's
    ProveType renamed ProofType (its name is in decode errors), nested structs likewise."""
    fields = []
    for f in struct.fields:
        if struct is IDENTITY and f.name == "timestamp":
            continue
        if f.go_type == "message.ProveType":
            f = replace(f, go_type="message.ProofType")
        if f.struct is not None:
            f = replace(f, struct=_for_0723(f.struct))
        fields.append(f)
    return replace(struct, fields=tuple(fields))


AUTH_MSG_0723 = _for_0723(AUTH_MSG)
PROOF_MSG_0723 = _for_0723(PROOF_MSG)


def _decode_auth(value: Any) -> dict[str, Any] | None:
    return decode_struct(AUTH_MSG, value)


def _decode_proof_msg(value: Any) -> dict[str, Any] | None:
    return decode_struct(PROOF_MSG, value)


def _decode_auth_0723(value: Any) -> dict[str, Any] | None:
    return decode_struct(AUTH_MSG_0723, value)


def _decode_proof_msg_0723(value: Any) -> dict[str, Any] | None:
    return decode_struct(PROOF_MSG_0723, value)


def task_type_of(variant: WsVariant, wire: int) -> int:
    """The devnet's task type for a wire proof type; NO_TASK_TYPE if the variant has none."""
    try:
        return variant.task_type(wire)
    except WireFormatError:
        return NO_TASK_TYPE


def _identity(auth: dict[str, Any] | None,
              variant: WsVariant = WsVariant.WS_2023_06) -> tuple[Identity, str]:
    """Identity and signature of a decoded AuthMsg; nil pointers crash like Go's handler."""
    if auth is None or auth["message"] is None:
        raise RuntimeError("nil AuthMsg or Identity")
    m = auth["message"]
    identity = Identity(m["name"], m["roller_type"], m.get("timestamp", 0), m["version"],
                        m["token"], variant)
    return identity, auth["signature"]


def _proof_detail(msg: dict[str, Any] | None) -> tuple[ProofDetail, str]:
    """The ProofDetail as sent (wire type: its 2023-06 hash is the signed one in both
    variants, spec 8 changes only the number) and the signature."""
    if msg is None or msg["zkProof"] is None:
        raise RuntimeError("nil ProofMsg or ProofDetail")
    d = msg["zkProof"]
    p = d["proof"]
    proof = None if p is None else AggProof(
        p["proof"] or b"", p["instance"] or b"", p["final_pair"] or b"", p["vk"] or b"",
        p["block_count"],
    )
    return ProofDetail(d["id"], d["type"], d["status"], proof, d["error"]), msg["signature"]


def _pk_or_none(digest: bytes, signature: str) -> str | None:
    try:
        return recover_pk(digest, signature)
    except SignatureError as exc:
        log.info("signature rejected reason=%s", exc)
        return None


class _RollerFeed:
    """The `register` subscription: forwards the node's channel; its end frees the roller."""

    def __init__(self, service: CoordinatorService, node: RollerNode) -> None:
        self._service = service
        self._node = node

    @property
    def pk(self) -> str:
        return self._node.pk

    async def next_result(self) -> Any:
        return await self._node.channel.get()

    def ended(self) -> None:
        self._service.free_roller(self._node)


class CoordinatorService:
    def __init__(self, tokens: TokenCache, pool: RollerPool, sessions: SessionManager,
                 variant: WsVariant = WsVariant.WS_2023_06) -> None:
        self.tokens = tokens
        self.pool = pool
        self.sessions = sessions
        self.variant = variant
        if variant is WsVariant.WS_2023_07:
            self._namespaces: tuple[str, ...] = NAMESPACES_0723
            auth = [Param(_decode_auth_0723)]
            self._methods = {
                "requestToken": Method(auth, self.request_token),
                "submitProof": Method([Param(_decode_proof_msg_0723)], self.submit_proof),
            }
        else:
            self._namespaces = NAMESPACES
            auth = [Param(_decode_auth)]
            self._methods = {
                "requestToken": Method(auth, self.request_token),
                "submitProof": Method([Param(_decode_proof_msg)], self.submit_proof),
                "listRollers": Method([], self.list_rollers),
                "getSessionInfo": Method([Param(decode_string, pointer=False)],
                                         self.get_session_info),
            }
        self._subscriptions = {"register": SubscriptionMethod(auth, self.register)}

    # -- rpc.Service -----------------------------------------------------------------

    def method(self, namespace: str, name: str) -> Method | None:
        if namespace == "rpc" and name == "modules":
            return Method([], self._modules)
        return self._methods.get(name) if namespace in self._namespaces else None

    def subscription(self, namespace: str, name: str) -> SubscriptionMethod | None:
        return self._subscriptions.get(name) if namespace in self._namespaces else None

    def modules(self) -> dict[str, str]:
        return {**{ns: "1.0" for ns in sorted(self._namespaces)}, "rpc": "1.0"}

    async def _modules(self, conn: RpcConnection, args: list[Any]) -> Any:
        return self.modules()

    # -- methods (spec 2) ------------------------------------------------------------

    async def request_token(self, conn: RpcConnection, args: list[Any]) -> str:
        identity, signature = _identity(args[0], self.variant)
        pk = _pk_or_none(identity.hash(), signature)
        if pk is None:
            raise method_error("signature verification failed")
        return self.tokens.get_or_create(pk)

    async def register(self, conn: RpcConnection, args: list[Any]) -> _RollerFeed:
        identity, signature = _identity(args[0], self.variant)
        pk = _pk_or_none(identity.hash(), signature)
        if pk is None:
            raise method_error("signature verification failed")
        if not self.tokens.matches(pk, identity.token):
            # e78099414 dropped the period after the name (spec 8).
            sep = "" if self.variant is WsVariant.WS_2023_07 else "."
            raise method_error(
                f"failed to find corresponding token. roller name: {identity.name}{sep} "
                f"roller pk: {pk}"
            )
        self.tokens.delete(pk)
        node = self.pool.get(pk)
        if node is None:
            node = RollerNode(
                pk=pk,
                name=identity.name,
                roller_type=task_type_of(self.variant, identity.roller_type),
                version=identity.version,
                task_ids=self.sessions.reload_task_ids(pk),
            )
            self.pool.add(node)
        log.info(
            "roller registered name=%s pk=%s type=%s version=%s reloaded=%d peer=%s",
            identity.name, pk, identity.roller_type, identity.version, len(node.task_ids),
            conn.peer,
        )
        return _RollerFeed(self, node)

    def free_roller(self, node: RollerNode) -> None:
        """Subscription ended: the pk leaves the pool at once; its sessions live on."""
        self.pool.remove(node.pk)
        self.sessions.metrics.inc("coordinator/rollers/disconnects/total")
        log.info("roller unregistered name=%s pk=%s", node.name, node.pk)

    async def submit_proof(self, conn: RpcConnection, args: list[Any]) -> None:
        detail, signature = _proof_detail(args[0])
        pk = _pk_or_none(detail.hash(), signature)
        if pk is None:
            raise method_error("auth signature verify fail")
        if self.variant is not WsVariant.WS_2023_06:
            detail = replace(detail, type=task_type_of(self.variant, detail.type))
        await self.sessions.submit(pk, detail)
        return None

    async def list_rollers(self, conn: RpcConnection, args: list[Any]) -> list[dict[str, Any]]:
        out = []
        for node in self.pool.nodes.values():
            active = sorted(node.task_ids)
            session = self.sessions.sessions.get(active[0]) if active else None
            out.append({
                "name": node.name,
                "type": node.roller_type,
                "public_key": node.pk,
                "active_session": active[0] if active else "",
                "active_session_start_time": int(session.created_at) if session else 0,
            })
        return out

    async def get_session_info(self, conn: RpcConnection, args: list[Any]) -> dict[str, Any]:
        session = self.sessions.sessions.get(args[0])
        if session is None:
            raise method_error(f"no such session, ID: {args[0]}")
        return session.info()


def _origin_allowed(origin: str) -> bool:
    """go-ethereum's default WS origins: http://localhost and http://<hostname>, any port."""
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme == "http" and host in ("localhost", socket.gethostname().lower())


class WsServer:
    """Listening socket and live connections of the coordinator."""

    def __init__(self, service: CoordinatorService, ping_idle: float = 60.0,
                 compression_level: int = 9) -> None:
        self.service = service
        self.ping_idle = ping_idle
        self.compression_level = compression_level
        self.connections: set[RpcConnection] = set()
        self._server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        extensions = []
        if self.compression_level != 0:
            # gorilla/websocket negotiates permessage-deflate with no context takeover only.
            extensions.append(ServerPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                compress_settings={"level": self.compression_level},
            ))
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._check_origin,
            compression=None,
            extensions=extensions,
            ping_interval=None,
            max_size=MAX_MESSAGE_SIZE,
            max_queue=None,
        )
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("coordinator listening url=ws://%s:%d/", host, bound)
        return bound

    @staticmethod
    def _check_origin(conn: ServerConnection, request: Request) -> Response | None:
        headers: Headers = request.headers
        origin = headers.get("Origin")
        if origin is not None and not _origin_allowed(origin):
            log.warning("websocket rejected reason=origin origin=%s", origin)
            return conn.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        conn = RpcConnection(ws, self.service, self.ping_idle,
                             peer=f"{peer[0]}:{peer[1]}" if peer else "")
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    def drop(self, pk: str | None = None) -> int:
        """Abort connections (all, or those holding a subscription of `pk`)."""
        dropped = 0
        for conn in list(self.connections):
            if pk is None or any(getattr(s.sub, "pk", None) == pk for s in conn.subs.values()):
                conn.abort()
                dropped += 1
        return dropped

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=False)
        self.drop()
        await self._server.wait_closed()
        self._server = None
        while self.connections:
            await asyncio.sleep(0.01)
