"""The 2023 coordinator's WebSocket as roller.protocol.coordinator_client uses it: the
`Transport` seam (one open connection: send, receive, abort), and the real one over
websocket-client (no Origin header, delayed pongs). tests/memory_transport.py is an
in-memory pair for the unit tests.

Failure model: a transport turns its library's errors into ConnectionLost (naming why), so
no foreign exception crosses into the client; a pong for a connection closed meanwhile is
dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import websocket

from roller.errors import ConnectionLost
from roller.redact import describe, redact_url

# The coordinator pings after 60 s without writing; allow that plus generous slack.
DEFAULT_IDLE_TIMEOUT = 150.0
# The go-ethereum the 2023 coordinator pins drops an idle connection when the pong arrives
# before its ping loop starts waiting for it: measured against it, 11 drops in 681 pings
# answered at once, 0 in 700 answered ~50 ms later. Each drop costs a re-registration.
PONG_DELAY_SECONDS = 0.05


class Transport(Protocol):
    """One open connection to the coordinator, as the client uses it.

    ``send`` and ``recv`` raise ConnectionLost (naming why) on any failure; ``recv`` returns
    one whole data message, or None when nothing at all (not even a ping) arrived for the
    connector's idle timeout. ``abort`` may be called from any thread and makes a blocked
    ``recv`` fail; ``release`` frees the connection and is called once, by the reader, after
    its last ``recv``. ``send_close`` is a best-effort polite close."""

    def send(self, text: str) -> None: ...

    def recv(self) -> str | bytes | None: ...

    def send_close(self) -> None: ...

    def abort(self) -> None: ...

    def release(self) -> None: ...


# (url, connect timeout s, idle timeout s) -> an open Transport; ConnectionLost if it cannot.
Connector = Callable[[str, float, float], Transport]


def _delay_pongs(ws: websocket.WebSocket, delay: float) -> None:
    """Make websocket-client's automatic pong (sent from inside a receive call) go out
    `delay` seconds later, from a timer thread; a pong for a connection closed meanwhile
    is dropped."""
    send_pong = ws.pong

    def pong_later(payload: bytes | str = "") -> None:
        def send() -> None:
            try:
                send_pong(payload)
            except (websocket.WebSocketException, OSError):
                pass  # the connection is gone; the reader reports why

        timer = threading.Timer(delay, send)
        timer.daemon = True
        timer.start()

    ws.pong = pong_later  # type: ignore[method-assign]


class WebSocketTransport:
    """The real transport: websocket-client's connection, its errors mapped to
    ConnectionLost. Pings are answered inside ``recv`` (PONG_DELAY_SECONDS later)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    def send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectionLost(f"send failed: {describe(exc)}") from exc

    def recv(self) -> str | bytes | None:
        # Control frames too, so a ping counts as traffic for the idle timeout. Each pass
        # takes one frame and ends in a return unless it was a ping or pong: the loop lasts
        # as long as the coordinator keeps the connection alive without data, as the
        # reader's own loop does.
        while True:
            try:
                opcode, data = self._ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return None
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                raise ConnectionLost(f"receive failed: {describe(exc)}") from exc
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise ConnectionLost("closed by coordinator")
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                message: str | bytes = data
                return message

    def send_close(self) -> None:
        try:
            self._ws.send_close()
        except (websocket.WebSocketException, OSError):
            pass  # already broken; the caller tears down anyway

    def abort(self) -> None:
        # Only shut the socket down here; release() closes it. Closing the fd under a
        # thread blocked in recv lets the fd number be reused and the reader hang.
        self._ws.abort()

    def release(self) -> None:
        self._ws.shutdown()


def websocket_connector(url: str, connect_timeout: float, idle_timeout: float
                        ) -> WebSocketTransport:
    """Open the WebSocket with no Origin header (the coordinator's origin check, spec 1.1)."""
    ws = websocket.WebSocket(enable_multithread=True)
    try:
        ws.connect(url, suppress_origin=True, timeout=connect_timeout)
    except (websocket.WebSocketException, OSError) as exc:
        ws.shutdown()
        raise ConnectionLost(
            f"cannot connect to coordinator url={redact_url(url)}: {describe(exc)}"
        ) from exc
    ws.settimeout(idle_timeout)
    _delay_pongs(ws, PONG_DELAY_SECONDS)
    return WebSocketTransport(ws)
