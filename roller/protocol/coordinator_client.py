"""JSON-RPC over WebSocket client for the Scroll coordinator (spec sections 1, 2, 6.3).

One connection at a time. A reader thread is always receiving, so the coordinator's pings are
answered (websocket-client pongs only inside a receive call), each after PONG_DELAY_SECONDS
(see there), and answers are matched to
requests by id in any order. Task notifications are decoded in the reader and handed to a
dispatch thread, so a slow ``on_task`` never stalls pongs; the subscription id is recorded by
the reader itself when the subscribe answer arrives, so a notification right behind it is
delivered.

Failure model: any loss of the connection (close by the server, socket error, a call timing
out, no frame at all from the server for ``idle_timeout`` seconds) tears the connection down,
fails every pending call with ConnectionLost and calls ``on_disconnect(reason)`` once, from
the thread that detected it (keep it short); ``wait_disconnected`` returns after it.
``close()`` does the same without calling ``on_disconnect``.
``connect()`` may be called again afterwards; subscriptions do not survive a reconnect.

Variant: ``variant`` (ws-2023-06 by default, or ws-2023-07, spec section 8) decides the
Identity a registration signs and the wire numbering of task and proof types; tasks reach
``on_task`` in roller's own numbering whatever the variant, and a ProofMsg must be signed
for the client's variant (``sign_proof``), else ``submit_proof`` refuses it. A 2023-07
coordinator keeps a key busy after a failure report until it registers again (spec 8), so
on that variant an accepted failure report (status != 0) is followed by a new registration
on the same connection (no task can arrive in between: the key is busy); if that fails,
the connection is torn down as lost, so the owner reconnects and registers.

Transport seam: the client talks to a `Transport` (one open connection: send, receive,
abort) made by a `Connector` (roller.protocol.ws_transport: the real one over
websocket-client; tests/memory_transport.py an in-memory pair for the unit tests). A
transport turns its library's errors into ConnectionLost, so no foreign exception crosses
into the client.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount

from roller.errors import (
    ConfigError,
    ConnectionLost,
    CoordinatorError,
    RollerError,
    WireFormatError,
)
from roller.protocol.encoding import go_dumps
from roller.protocol.messages import (
    AuthMsg,
    Identity,
    ProofDetail,
    ProofMsg,
    RespStatus,
    TaskMsg,
    WsVariant,
)
from roller.protocol.ws_transport import (
    DEFAULT_IDLE_TIMEOUT,
    Connector,
    Transport,
    websocket_connector,
)
from roller.redact import redact_url

log = logging.getLogger(__name__)

TaskHandler = Callable[[TaskMsg], None]

class _Call:
    """One outstanding request; completed by the reader or by connection loss."""

    def __init__(self, method: str, on_result: Callable[[Any], None] | None) -> None:
        self.method = method
        self.on_result = on_result
        self.done = threading.Event()
        self.result: Any = None
        self.error: tuple[int, str] | None = None
        self.lost: str | None = None


class _Connection:
    """State of one WebSocket connection: socket, pending calls, subscriptions, threads."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.pending: dict[int, _Call] = {}
        self.subs: dict[str, TaskHandler] = {}
        self.down = False
        self.closed = threading.Event()
        self.tasks: queue.Queue[tuple[TaskHandler, TaskMsg] | None] = queue.Queue()
        # The last register() arguments on this connection, for 2023-07's re-registration.
        self.registration: tuple[LocalAccount, str, int, str, TaskHandler] | None = None


def _wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


class CoordinatorClient:
    """``connector`` opens the transport (default: a real WebSocket); ``wait`` blocks a call
    until its answer or timeout (default ``Event.wait``; tests inject a clock here)."""

    def __init__(
        self,
        url: str,
        *,
        slot: str = "",
        call_timeout: float = 30.0,
        submit_timeout: float = 3600.0,
        on_disconnect: Callable[[str], None] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        variant: WsVariant | str = WsVariant.WS_2023_06,
        connector: Connector = websocket_connector,
        wait: Callable[[threading.Event, float], bool] = _wait,
    ) -> None:
        self.url = url
        self.slot = slot
        try:
            self.variant = WsVariant(variant)
        except ValueError as exc:
            raise ConfigError(f"coordinator protocol {variant!r} is not a WebSocket variant "
                              f"({', '.join(v.value for v in WsVariant)}) slot={slot}") from exc
        self._connector = connector
        self._wait = wait
        self.call_timeout = call_timeout
        self.submit_timeout = submit_timeout
        self.idle_timeout = idle_timeout
        self._on_disconnect = on_disconnect
        self._lock = threading.Lock()
        self._conn: _Connection | None = None

    # -- connection lifecycle -------------------------------------------------------------

    def connect(self) -> None:
        """Open the transport and start the reader; no-op if connected."""
        with self._lock:
            if self._conn is not None and not self._conn.down:
                return
            conn = _Connection(self._connector(self.url, self.call_timeout, self.idle_timeout))
            self._conn = conn
        threading.Thread(target=self._read_loop, args=(conn,), daemon=True,
                         name=f"coordinator-reader-{self.slot}").start()
        threading.Thread(target=self._dispatch_loop, args=(conn,), daemon=True,
                         name=f"coordinator-dispatch-{self.slot}").start()
        log.info("coordinator connected url=%s slot=%s variant=%s", redact_url(self.url),
                 self.slot, self.variant.value)

    def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionLost, no on_disconnect."""
        conn = self._conn
        if conn is None:
            return
        conn.transport.send_close()
        self._fail(conn, "closed by client", notify=False)

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.down

    def wait_disconnected(self, timeout: float | None = None) -> bool:
        """Block until the current connection is down; True if it is (or never existed)."""
        conn = self._conn
        return True if conn is None else conn.closed.wait(timeout)

    # -- protocol methods -----------------------------------------------------------------

    def request_token(self, auth: AuthMsg) -> str:
        result = self._call("roller_requestToken", [auth.to_json()], self.call_timeout)
        if not isinstance(result, str):
            raise WireFormatError("result", "roller_requestToken must return a string")
        return result

    def register(
        self,
        account: LocalAccount,
        name: str,
        roller_type: int,
        version: str,
        on_task: TaskHandler,
    ) -> str:
        """Token request, re-sign with the token, subscribe; returns the subscription id.

        ``roller_type`` is roller's task type (ProveType: 0 chunk, 1 batch), sent as the
        variant's wire number. Tasks of this subscription are passed to ``on_task`` on the
        dispatch thread."""
        wire_type = self.variant.wire_type(roller_type, "roller_type")
        # 2023-07 has no timestamp in the Identity (spec 8).
        timestamp = int(time.time()) if self.variant.has_timestamp else 0
        identity = Identity(name=name, roller_type=wire_type, timestamp=timestamp,
                            version=version, token="", variant=self.variant)
        token = self.request_token(AuthMsg.signed(identity, account))
        auth = AuthMsg.signed(dataclasses.replace(identity, token=token), account)
        conn = self._require_conn()

        def remember(result: Any) -> None:
            if isinstance(result, str):
                with conn.lock:
                    conn.subs[result] = on_task

        sub_id = self._call("roller_subscribe", ["register", auth.to_json()],
                            self.call_timeout, on_result=remember)
        if not isinstance(sub_id, str):
            raise WireFormatError("result", "roller_subscribe must return a subscription id")
        conn.registration = (account, name, roller_type, version, on_task)
        log.info("registered name=%s slot=%s address=%s roller_type=%d variant=%s "
                 "subscription=%s", name, self.slot, account.address, roller_type,
                 self.variant.value, sub_id)
        return sub_id

    def unsubscribe(self) -> None:
        """Drop every local subscription and, if connected, unsubscribe them server-side."""
        conn = self._conn
        if conn is None:
            return
        with conn.lock:
            sub_ids = list(conn.subs)
            conn.subs.clear()
        if conn.down:
            return
        for sub_id in sub_ids:
            self._call("roller_unsubscribe", [sub_id], self.call_timeout)
            log.info("unsubscribed slot=%s subscription=%s", self.slot, sub_id)

    def sign_proof(self, detail: ProofDetail, account: LocalAccount) -> ProofMsg:
        """The ProofMsg for ``detail`` signed over this client's variant's hash."""
        return ProofMsg.signed(detail, account, self.variant)

    def submit_proof(self, msg: ProofMsg) -> None:
        """Blocks while the coordinator stores and verifies the proof (long timeout)."""
        if msg.variant is not self.variant:
            # Its signature covers the other variant's type number: the coordinator would
            # answer "auth signature verify fail" for a reason nobody could see.
            raise WireFormatError(
                "zkProof.type", f"task_id={msg.detail.id} slot={self.slot}: proof signed for "
                f"{msg.variant.value}, client speaks {self.variant.value}")
        conn = self._require_conn()
        self._call("roller_submitProof", [msg.to_json()], self.submit_timeout)
        log.info("proof submitted task_id=%s status=%d slot=%s",
                 msg.detail.id, msg.detail.status, self.slot)
        if self.variant is WsVariant.WS_2023_07 and msg.detail.status != RespStatus.OK:
            self._register_again(conn, msg.detail.id)

    def _register_again(self, conn: _Connection, task_id: str) -> None:
        """2023-07: a failure report leaves the key busy until it registers again."""
        registration = conn.registration
        if registration is None or conn.down or self._conn is not conn:
            return  # not registered here: the next registration frees the key anyway
        try:
            self.unsubscribe()
            self.register(*registration)
        except RollerError as exc:
            # The submission itself was accepted: never raise (it would be re-sent).
            self._fail(conn, f"registering again after failure report task_id={task_id} "
                       f"failed: {exc}")
            return
        log.info("registered again after failure report task_id=%s slot=%s", task_id,
                 self.slot)

    # -- calls ----------------------------------------------------------------------------

    def _require_conn(self) -> _Connection:
        conn = self._conn
        if conn is None or conn.down:
            raise ConnectionLost("not connected to the coordinator")
        return conn

    def _call(
        self,
        method: str,
        params: list[Any],
        timeout: float,
        on_result: Callable[[Any], None] | None = None,
    ) -> Any:
        conn = self._require_conn()
        call = _Call(method, on_result)
        with conn.lock:
            if conn.down:
                raise ConnectionLost("not connected to the coordinator")
            request_id = next(conn.ids)
            conn.pending[request_id] = call
        text = go_dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        try:
            conn.transport.send(text)
        except ConnectionLost as exc:
            self._fail(conn, str(exc))
            raise ConnectionLost(f"{method}: {exc}") from exc
        if not self._wait(call.done, timeout):
            reason = f"{method} timed out after {timeout:g}s"
            self._fail(conn, reason)
            raise ConnectionLost(reason)
        if call.lost is not None:
            raise ConnectionLost(f"{method}: {call.lost}")
        if call.error is not None:
            raise CoordinatorError(method, *call.error)
        return call.result

    def _fail(self, conn: _Connection, reason: str, notify: bool = True) -> None:
        """Tear a connection down once: fail pending calls, stop threads, notify."""
        with conn.lock:
            if conn.down:
                return
            conn.down = True
            pending = list(conn.pending.values())
            conn.pending.clear()
            conn.subs.clear()
        conn.transport.abort()  # the reader releases it once its recv has returned
        for call in pending:
            call.lost = reason
            call.done.set()
        conn.tasks.put(None)
        log.warning("coordinator connection down slot=%s reason=%s", self.slot, reason)
        try:
            if notify and self._on_disconnect is not None:
                self._on_disconnect(reason)
        except Exception:
            log.exception("on_disconnect callback failed slot=%s", self.slot)
        finally:
            conn.closed.set()  # after on_disconnect, so waiters see its effects

    # -- reader and dispatcher ------------------------------------------------------------

    def _read_loop(self, conn: _Connection) -> None:
        try:
            self._read_until_down(conn)
        finally:
            conn.transport.release()

    def _read_until_down(self, conn: _Connection) -> None:
        while True:
            try:
                data = conn.transport.recv()
            except ConnectionLost as exc:
                self._fail(conn, str(exc))
                return
            if data is None:
                self._fail(conn, f"no data from coordinator for {self.idle_timeout:g}s")
                return
            try:
                self._handle_message(conn, data)
            except Exception:  # a bad message must never stop the reader (pongs)
                log.exception("message handling failed slot=%s", self.slot)

    def _handle_message(self, conn: _Connection, data: bytes | str) -> None:
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            log.warning("unparseable message from coordinator slot=%s", self.slot)
            return
        items = message if isinstance(message, list) else [message]
        if not items:
            log.warning("empty batch from coordinator slot=%s", self.slot)
        for item in items:
            if not isinstance(item, dict):
                log.warning("non-object message from coordinator slot=%s", self.slot)
            elif "id" in item and ("result" in item or "error" in item):
                self._handle_answer(conn, item)
            elif item.get("method") in ("roller_subscription", "debug_subscription"):
                self._handle_notification(conn, item.get("params"))
            else:
                log.warning("unexpected message from coordinator slot=%s", self.slot)

    def _handle_answer(self, conn: _Connection, item: dict[str, Any]) -> None:
        request_id = item["id"]
        error = item.get("error")
        with conn.lock:
            call = (conn.pending.pop(request_id, None)
                    if isinstance(request_id, int) and not isinstance(request_id, bool) else None)
        if call is None:
            if error is not None:
                log.warning("coordinator error without a matching call slot=%s error=%s",
                            self.slot, _error_text(error))
            else:
                log.warning("answer without a matching call slot=%s id=%r",
                            self.slot, request_id)
            return
        if error is not None:
            call.error = _parse_error(error)
        else:
            call.result = item.get("result")
            if call.on_result is not None:
                call.on_result(call.result)
        call.done.set()

    def _handle_notification(self, conn: _Connection, params: Any) -> None:
        if not isinstance(params, dict):
            log.warning("notification without params object slot=%s", self.slot)
            return
        sub_id = params.get("subscription")
        with conn.lock:
            handler = conn.subs.get(sub_id) if isinstance(sub_id, str) else None
        if handler is None:
            log.warning("notification for unknown subscription slot=%s subscription=%r",
                        self.slot, sub_id)
            return
        try:
            task = TaskMsg.from_json(params.get("result"), variant=self.variant)
        except WireFormatError as exc:
            log.warning("malformed task notification skipped slot=%s field=%s reason=%s",
                        self.slot, exc.field, exc.reason)
            return
        log.info("task received task_id=%s type=%d blocks=%d slot=%s",
                 task.id, task.type, len(task.block_hashes), self.slot)
        conn.tasks.put((handler, task))

    def _dispatch_loop(self, conn: _Connection) -> None:
        # Drains tasks queued before a disconnect too: they are valid assignments.
        while (item := conn.tasks.get()) is not None:
            handler, task = item
            try:
                handler(task)
            except Exception:
                log.exception("task handler failed task_id=%s slot=%s", task.id, self.slot)


def _parse_error(error: Any) -> tuple[int, str]:
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (code if isinstance(code, int) and not isinstance(code, bool) else 0,
                message if isinstance(message, str) else json.dumps(error))
    return 0, json.dumps(error)


def _error_text(error: Any) -> str:
    code, message = _parse_error(error)
    return f"{code} {message}"
