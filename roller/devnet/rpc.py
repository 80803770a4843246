"""JSON-RPC 2.0 over one WebSocket connection, as go-ethereum's rpc server behaves (spec 1).

One task per incoming call (answers may come back out of order), batches answered as
one array, subscriptions whose notifications never precede the subscribe answer, Go's
error codes and texts, the -32700 close, and a ping only after `ping_idle` seconds without
a server write followed by a pong deadline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from roller.errors import GoDecodeError, GoSyntaxError
from roller.protocol.encoding import (
    GoNumber,
    GoObject,
    decode_string,
    go_dumps,
    json_type_name,
    loads_first,
    raw_id,
)

log = logging.getLogger(__name__)

PONG_DEADLINE = 30.0


class RpcError(Exception):
    """An error answer: JSON-RPC code and Go's message text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def method_error(message: str) -> RpcError:
    """An application error returned by a method (always code -32000)."""
    return RpcError(-32000, message)


Decoder = Callable[[Any], Any]


@dataclass(frozen=True)
class Param:
    """One positional param: its decoder and whether Go's type is a pointer (may be missing)."""

    decode: Decoder
    pointer: bool = True


def parse_args(params: Any, spec: list[Param]) -> list[Any]:
    """go-ethereum parsePositionalArguments: array only, too many/invalid/missing texts."""
    if params is None:
        items: list[Any] = []
    elif isinstance(params, list) and not isinstance(params, GoObject):
        items = list(params)
    else:
        raise RpcError(-32602, "non-array args")
    args: list[Any] = []
    for i, raw in enumerate(items):
        if i >= len(spec):
            raise RpcError(-32602, f"too many arguments, want at most {len(spec)}")
        try:
            args.append(spec[i].decode(raw))
        except GoDecodeError as exc:
            raise RpcError(-32602, f"invalid argument {i}: {exc}") from None
    for i in range(len(args), len(spec)):
        if not spec[i].pointer:
            raise RpcError(-32602, f"missing value for required argument {i}")
        args.append(None)
    return args


class Subscription(Protocol):
    """What a subscription method hands back: a feed of results and an end hook."""

    async def next_result(self) -> Any: ...

    def ended(self) -> None: ...


MethodFn = Callable[["RpcConnection", list[Any]], Awaitable[Any]]
SubscribeFn = Callable[["RpcConnection", list[Any]], Awaitable[Subscription]]


@dataclass(frozen=True)
class Method:
    params: list[Param]
    fn: MethodFn


@dataclass(frozen=True)
class SubscriptionMethod:
    params: list[Param]
    fn: SubscribeFn


class Service(Protocol):
    """Method table of the server: `namespace_name` lookups and rpc_modules content."""

    def method(self, namespace: str, name: str) -> Method | None: ...

    def subscription(self, namespace: str, name: str) -> SubscriptionMethod | None: ...

    def modules(self) -> dict[str, str]: ...


def new_subscription_id() -> str:
    """go-ethereum's random ID: 0x + hex of 16 random bytes with leading zeros stripped."""
    return "0x" + (secrets.token_bytes(16).hex().lstrip("0") or "0")


def _answer(raw_id: str, result: Any = None, error: RpcError | None = None) -> str:
    if error is not None:
        body = go_dumps({"code": error.code, "message": error.message})
        return f'{{"jsonrpc":"2.0","id":{raw_id},"error":{body}}}'
    return f'{{"jsonrpc":"2.0","id":{raw_id},"result":{go_dumps(result)}}}'


@dataclass
class _Envelope:
    id_present: bool
    raw_id: str
    id_valid: bool
    method: str
    params: Any
    has_result_or_error: bool
    has_params: bool


def _envelope(obj: Any) -> _Envelope | None:
    """Decode the jsonrpcMessage members (case-insensitively); None when not an object."""
    if not isinstance(obj, GoObject):
        return None
    id_present, id_value = obj.get_folded("id")
    _, method = obj.get_folded("method")
    has_params, params = obj.get_folded("params")
    has_result, _ = obj.get_folded("result")
    has_error, _ = obj.get_folded("error")
    if method is not None and (not isinstance(method, str) or isinstance(method, GoNumber)):
        raise GoSyntaxError(
            f"json: cannot unmarshal {json_type_name(method)} into Go struct field "
            "jsonrpcMessage.method of type string"
        )
    id_valid = id_present and not isinstance(id_value, list)
    return _Envelope(
        id_present=id_present,
        raw_id=raw_id(id_value) if id_present else "null",
        id_valid=id_valid,
        method=method or "",
        params=params,
        has_result_or_error=has_result or has_error,
        has_params=has_params,
    )


@dataclass
class _ActiveSub:
    sub: Subscription
    forwarder: asyncio.Task[None] | None = None


@dataclass(eq=False)
class RpcConnection:
    """One client connection: reader, writer queue, keepalive and its subscriptions."""

    ws: ServerConnection
    service: Service
    ping_idle: float
    subs: dict[str, _ActiveSub] = field(default_factory=dict)
    peer: str = ""
    _out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    _last_write: float = field(default_factory=time.monotonic)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def serve(self) -> None:
        """Run until the connection ends; then end every subscription (spec 1.5 item 5)."""
        writer = asyncio.create_task(self._writer())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            async for message in self.ws:
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                if not self._dispatch(text):
                    break
        except ConnectionClosed:
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            for sub_id in list(self.subs):
                self._end_sub(sub_id)
            keepalive.cancel()
            self._out.put_nowait(None)
            await asyncio.gather(writer, keepalive, return_exceptions=True)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure, or Go's close)."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, text: str) -> bool:
        """Start handling one message; False when the connection must close (-32700)."""
        try:
            value = loads_first(text)
            if isinstance(value, list) and not isinstance(value, GoObject):
                envelopes = [_envelope(item) for item in value]
                if not envelopes:
                    self._out.put_nowait(_answer("null", error=RpcError(-32600, "empty batch")))
                    return True
                if any(e is None for e in envelopes):
                    bad = next(v for v, e in zip(value, envelopes, strict=True) if e is None)
                    raise GoSyntaxError(
                        f"json: cannot unmarshal {json_type_name(bad)} into Go value of type "
                        "rpc.jsonrpcMessage"
                    )
                self._spawn(self._handle_batch([e for e in envelopes if e is not None]))
                return True
            env = _envelope(value)
            if env is None:
                raise GoSyntaxError(
                    f"json: cannot unmarshal {json_type_name(value)} into Go value of type "
                    "rpc.jsonrpcMessage"
                )
        except GoSyntaxError as exc:
            log.info("rpc parse error peer=%s error=%s", self.peer, exc)
            self._out.put_nowait(_answer("null", error=RpcError(-32700, str(exc))))
            self._out.put_nowait(None)
            return False
        self._spawn(self._handle_single(env))
        return True

    async def _handle_single(self, env: _Envelope) -> None:
        answer, activate = await self._handle(env)
        if answer is not None:
            self._out.put_nowait(answer)
        for sub_id in activate:
            self._activate(sub_id)

    async def _handle_batch(self, envs: list[_Envelope]) -> None:
        answers: list[str] = []
        activate: list[str] = []
        for env in envs:
            answer, subs = await self._handle(env)
            if answer is not None:
                answers.append(answer)
            activate.extend(subs)
        if answers:
            self._out.put_nowait("[" + ",".join(answers) + "]")
        for sub_id in activate:
            self._activate(sub_id)

    async def _handle(self, env: _Envelope) -> tuple[str | None, list[str]]:
        """Answer text (None for notifications/responses) and subscriptions to activate."""
        is_call = env.id_valid and env.method != ""
        is_notification = not env.id_present and env.method != ""
        if not (is_call or is_notification):
            if env.id_valid and not env.has_params and env.has_result_or_error:
                return None, []
            raw = env.raw_id if env.id_valid else "null"
            return _answer(raw, error=RpcError(-32600, "invalid request")), []
        activate: list[str] = []
        try:
            if env.method.endswith("_subscribe"):
                sub_id = await self._subscribe(env)
                result: Any = sub_id
                activate.append(sub_id)
            elif env.method.endswith("_unsubscribe"):
                (sub_id,) = parse_args(env.params, [Param(_decode_sub_id, pointer=False)])
                if sub_id not in self.subs:
                    raise method_error("subscription not found")
                self._end_sub(sub_id)
                result = True
            else:
                result = await self._call(env)
        except RpcError as exc:
            return (None if is_notification else _answer(env.raw_id, error=exc)), []
        except Exception:
            log.exception("rpc handler crashed method=%s", env.method)
            crashed = RpcError(-32000, "method handler crashed")
            return (None if is_notification else _answer(env.raw_id, error=crashed)), []
        if is_notification:
            return None, activate
        return _answer(env.raw_id, result=result), activate

    async def _call(self, env: _Envelope) -> Any:
        namespace, _, name = env.method.partition("_")
        method = self.service.method(namespace, name) if name else None
        if method is None:
            raise RpcError(-32601, f"the method {env.method} does not exist/is not available")
        args = parse_args(env.params, method.params)
        return await method.fn(self, args)

    async def _subscribe(self, env: _Envelope) -> str:
        params = env.params
        if not isinstance(params, list) or isinstance(params, GoObject) or not params:
            raise RpcError(-32602, "non-array args")
        name = params[0] if isinstance(params[0], str) else ""
        if not name or isinstance(name, GoNumber):
            raise RpcError(-32602, "expected subscription name as first argument")
        namespace = env.method[: -len("_subscribe")]
        method = self.service.subscription(namespace, name)
        if method is None:
            raise RpcError(-32601, f'no "{name}" subscription in {namespace} namespace')
        args = parse_args(params, [Param(decode_string, pointer=False), *method.params])
        sub = await method.fn(self, args[1:])
        sub_id = new_subscription_id()
        self.subs[sub_id] = _ActiveSub(sub)
        return sub_id

    def _activate(self, sub_id: str) -> None:
        active = self.subs.get(sub_id)
        if active is not None and active.forwarder is None:
            active.forwarder = asyncio.create_task(self._forward(sub_id, active.sub))

    async def _forward(self, sub_id: str, sub: Subscription) -> None:
        while True:
            result = await sub.next_result()
            self.notify(sub_id, result)

    def notify(self, sub_id: str, result: Any) -> None:
        """Queue a subscription notification (after every answer queued before it)."""
        params = {"subscription": sub_id, "result": result}
        self._out.put_nowait(
            '{"jsonrpc":"2.0","method":"roller_subscription","params":'
            + go_dumps(params)
            + "}"
        )

    def _end_sub(self, sub_id: str) -> None:
        active = self.subs.pop(sub_id, None)
        if active is None:
            return
        if active.forwarder is not None:
            active.forwarder.cancel()
        active.sub.ended()

    async def _writer(self) -> None:
        while True:
            text = await self._out.get()
            if text is None:
                break
            try:
                await asyncio.wait_for(self.ws.send(text + "\n"), timeout=10)
            except (ConnectionClosed, TimeoutError):
                break
            self._last_write = time.monotonic()
        # Go closes the socket without a close frame after a parse error or write failure.
        transport = self.ws.transport
        if transport is not None:
            transport.close()

    async def _keepalive(self) -> None:
        while True:
            due = self._last_write + self.ping_idle - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            try:
                waiter = await self.ws.ping(b"")
                self._last_write = time.monotonic()
                await asyncio.wait_for(waiter, PONG_DEADLINE)
            except (ConnectionClosed, TimeoutError):
                log.info("rpc keepalive failed peer=%s", self.peer)
                self.abort()
                return


def _decode_sub_id(value: Any) -> str:
    return decode_string(value, "rpc.ID")
