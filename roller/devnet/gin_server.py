"""What gin and gin-jwt give Scroll's HTTP coordinator, for the devnet's: the server, the
`/coordinator/v1/` routes, the envelope every answer travels in, and the JWTs.

The devnet's coordinator (roller.devnet.http_coordinator) subclasses `GinServer` and names
its handlers in `routes`; a handler returns the envelope's `data` or raises `Refusal`
(errcode, errmsg), as the Go handlers answer through `types.RenderFailure`.

Failure model: a handler bug answers HTTP 500 with an empty body (gin.Recovery) and the
server keeps running; an unknown path is `404 page not found` as text. JWTs are HS256 with a
random per-process secret, so a restart of the devnet invalidates tokens (unlike a real
coordinator with a fixed secret); `clear_auth` does the same on demand.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from roller.errors import WireFormatError
from roller.protocol import http_jwt
from roller.protocol.encoding import go_dumps
from roller.protocol.http_errors import ErrCode

log = logging.getLogger("roller.devnet.http_coordinator")

PREFIX = "/coordinator/v1/"

# A handler: (request, body, bearer token or None) -> the envelope's data.
Handler = Callable[[BaseHTTPRequestHandler, bytes, str | None], Any]


class Refusal(Exception):
    """A handler's refusal: the envelope's errcode and errmsg, HTTP 200."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class GinServer:
    """A threaded HTTP server answering gin's way; subclasses give `routes`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.secret = os.urandom(32)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def routes(self) -> dict[tuple[str, str], Handler]:
        """(method, path under PREFIX) -> handler."""
        raise NotImplementedError

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        coordinator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One segment per answer (headers and body buffered, flushed after the handler)
            # and no Nagle: otherwise every loopback call waits ~40 ms for a delayed ACK.
            wbufsize = -1
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                coordinator._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                coordinator._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("coordinator http " + format, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        # A short poll interval so stop() (and a devnet restart) returns quickly.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        daemon=True, name="devnet-http-coordinator")
        self._thread.start()
        return int(server.server_address[1])

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def _serve(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(req.path)
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        if "application/json" not in (req.headers.get("Content-Type") or ""):
            # gin picks form binding without this header: the JSON body is silently ignored
            # and an H2/H3 get_task runs with default parameters (spec 1, R v4.4.23).
            body = b"{}"
        name = parts.path[len(PREFIX):] if parts.path.startswith(PREFIX) else ""
        handler = self.routes().get((method, name))
        if handler is None:
            return _send(req, 404, b"404 page not found", "text/plain")
        token = _bearer(req, parts.query)
        try:
            data = handler(req, body, token)
            envelope = {"errcode": 0, "errmsg": "", "data": data}
        except Refusal as exc:
            envelope = {"errcode": exc.code, "errmsg": exc.text, "data": None}
        except Exception:  # gin.Recovery: a panic is HTTP 500 with an empty body
            log.exception("http coordinator handler crashed endpoint=%s", name)
            return _send(req, 500, b"", "text/plain")
        _send(req, 200, go_dumps(envelope).encode(), "application/json; charset=utf-8")

    # -- auth -----------------------------------------------------------------------------

    def _issue(self, ttl: float, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(self.clock())
        exp = now + int(ttl)
        token = http_jwt.encode({**claims, "exp": exp, "orig_iat": now}, self.secret)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
        return {"time": stamp, "token": token}

    def _jwt(self, token: str | None) -> dict[str, Any]:
        """gin-jwt's middleware: texts lowercased, 50001 only for expiry (spec 2.4)."""
        if not token:
            raise Refusal(ErrCode.JWT_COMMON, "cookie token is empty")
        try:
            return http_jwt.verify(token, self.secret, self.clock())
        except http_jwt.JwtError as exc:
            text = str(exc).lower()
            code = (ErrCode.JWT_TOKEN_EXPIRED if text == "token is expired"
                    else ErrCode.JWT_COMMON)
            raise Refusal(code, text) from exc

    def clear_auth(self) -> None:
        """A restart with a new secret: every token and challenge becomes invalid."""
        self.secret = os.urandom(32)


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise WireFormatError("$", f"invalid JSON: {exc}") from exc


def _bearer(req: BaseHTTPRequestHandler, query: str) -> str | None:
    """gin-jwt TokenLookup "header: Authorization, query: token, cookie: jwt"."""
    header = req.headers.get("Authorization") or ""
    if header.startswith("Bearer "):
        return header[len("Bearer "):]
    tokens = parse_qs(query).get("token")
    return tokens[0] if tokens else None


def _send(req: BaseHTTPRequestHandler, status: int, payload: bytes, ctype: str) -> None:
    req.send_response(status)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(payload)))
    req.end_headers()
    req.wfile.write(payload)
