"""Control API of the devnet: HTTP JSON on its own loopback port, for tests and operators.

GET  /ledger            tasks with dispatches and submissions, rollers, sessions
GET  /metrics           Prometheus text (spec 5.8 names)     GET /metrics.json  same as JSON
GET  /health            {"ok": true, ports}
POST /push_task         {"type":0,"block_hashes":[...]} | {"type":1,"sub_proofs":[...]}, "id"?
POST /requeue           {"id": task id, "pk": optional} assign a finished task id again
POST /dispatch_now      run one dispatch round now
POST /drop_connections  {"pk": optional} abort WS connections (network failure)
POST /restart           coordinator restart: pool and tokens empty, sessions kept, new timers
POST /stop_for          {"seconds": s} coordinator down now, back after s
POST /submit_delay      {"seconds": s} extra delay before each verification (WS, HTTP)
POST /collection_time   {"seconds": s} session timeout for timers armed from now on
POST /l2_fault          {"mode": "none|error|null|http500|http429|hang|otherblock|badparent",
                         "count": optional n}
Errors answer {"error": text} with status 400 (bad input) or 404 (unknown path).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from roller.errors import RollerError

log = logging.getLogger(__name__)


class Ports(Protocol):
    """The ports /health reports."""

    @property
    def ws(self) -> int: ...

    @property
    def l2(self) -> int: ...


class Controlled(Protocol):
    """What the control API drives, one method per route: the scripted controls of
    roller.devnet.devnet.Devnet, which starts this server over itself."""

    @property
    def ports(self) -> Ports | None: ...

    def ledger(self) -> dict[str, Any]: ...

    def metrics_text(self) -> bytes: ...

    def metrics_snapshot(self) -> dict[str, Any]: ...

    def push_task(self, task_type: int = 0, block_hashes: Sequence[str] = (),
                  sub_proofs: Sequence[dict[str, Any]] = (),
                  task_id: str | None = None) -> str: ...

    def requeue(self, task_id: str, pk: str | None = None) -> None: ...

    def dispatch_now(self) -> None: ...

    def drop_connections(self, pk: str | None = None) -> int: ...

    def restart(self) -> None: ...

    def stop_for(self, seconds: float) -> None: ...

    def set_submit_delay(self, seconds: float) -> None: ...

    def set_collection_time(self, seconds: float) -> None: ...

    def set_l2_fault(self, mode: str, count: int | None = None) -> None: ...


class _NoRoute(Exception):
    """Unknown method/path (404)."""


def _seconds(body: dict[str, Any]) -> float:
    value = body.get("seconds")
    if not isinstance(value, int | float) or value < 0:
        raise ValueError("'seconds' must be a non-negative number")
    return float(value)


class ControlServer:
    def __init__(self, devnet: Controlled, host: str = "127.0.0.1", port: int = 0) -> None:
        self.devnet = devnet
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                server.handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server.handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("control http " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True

    def start(self) -> int:
        threading.Thread(target=self._server.serve_forever, args=(0.05,),
                         name="devnet-control", daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[Any, str]:
        net = self.devnet
        if method == "GET":
            if path == "/ledger":
                return net.ledger(), "json"
            if path == "/metrics":
                return net.metrics_text(), "text"
            if path == "/metrics.json":
                return net.metrics_snapshot(), "json"
            if path == "/health":
                ports = net.ports
                return {"ok": True, "ws": ports.ws if ports else None,
                        "l2": ports.l2 if ports else None}, "json"
        elif method == "POST":
            if path == "/push_task":
                task_id = net.push_task(
                    int(body.get("type", 0)), body.get("block_hashes") or (),
                    body.get("sub_proofs") or (), body.get("id"),
                )
                return {"id": task_id}, "json"
            if path == "/requeue":
                pk = body.get("pk")
                net.requeue(str(body.get("id", "")), str(pk) if pk else None)
                return {}, "json"
            if path == "/dispatch_now":
                net.dispatch_now()
                return {}, "json"
            if path == "/drop_connections":
                return {"dropped": net.drop_connections(body.get("pk"))}, "json"
            if path == "/restart":
                net.restart()
                return {}, "json"
            if path == "/stop_for":
                net.stop_for(_seconds(body))
                return {}, "json"
            if path == "/submit_delay":
                net.set_submit_delay(_seconds(body))
                return {}, "json"
            if path == "/collection_time":
                net.set_collection_time(_seconds(body))
                return {}, "json"
            if path == "/l2_fault":
                count = body.get("count")
                net.set_l2_fault(str(body.get("mode", "none")),
                                 int(count) if count is not None else None)
                return {}, "json"
        raise _NoRoute(f"no route {method} {path}")

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        status = 200
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            result, kind = self._route(method, req.path.split("?", 1)[0], body)
        except _NoRoute as exc:
            status, result, kind = 404, {"error": str(exc)}, "json"
        except (ValueError, TypeError, RollerError) as exc:
            status, result, kind = 400, {"error": str(exc)}, "json"
        if kind == "text":
            payload, ctype = result, "text/plain; version=0.0.4"
        else:
            payload, ctype = json.dumps(result).encode(), "application/json"
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)
