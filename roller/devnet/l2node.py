"""The devnet L2 node: HTTP JSON-RPC `scroll_getBlockTraceByNumberOrHash` over a trace dir,
and `eth_blockNumber` (the highest served block).

Param: a block hash, a block number (hex quantity), `latest`/`earliest`, or
`{"blockHash": ...}`; unknown blocks answer `result: null` like l2geth. Batches are
answered as arrays. A fault knob (switchable at runtime, optionally for the next N HTTP
requests only) makes the node answer JSON-RPC errors, nulls, HTTP 500s, HTTP 429s
(`Retry-After: 1`), or hang, or lie: `otherblock` answers each trace request with the
trace of another block, `badparent` with the right block whose `header.parentHash` breaks
the chain (what the roller's trace checks must catch before the prover sees it).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from roller.devnet.traces import TraceEntry, TraceIndex

log = logging.getLogger(__name__)

TRACE_METHOD = "scroll_getBlockTraceByNumberOrHash"
HEAD_METHOD = "eth_blockNumber"
FAULT_MODES = ("none", "error", "null", "http500", "http429", "hang", "otherblock",
               "badparent")
BROKEN_PARENT = "0x" + "ba" * 32
FAULT_ERROR_TEXT = "devnet fault injection"
_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_QUANTITY_RE = re.compile(r"0x[0-9a-fA-F]+")


@dataclass
class FaultState:
    """Current fault mode; `remaining` = requests left before it resets to none (None = all)."""

    mode: str = "none"
    remaining: int | None = None
    # Requests held by a hang right now: what a test waits for before clearing it.
    hanging: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def set(self, mode: str, count: int | None = None) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; choose one of {FAULT_MODES}")
        with self._lock:
            self.mode, self.remaining = mode, count
            self._changed.notify_all()

    def take(self) -> str:
        """The mode for one incoming request (counts it against `remaining`)."""
        with self._lock:
            mode = self.mode
            if mode != "none" and self.remaining is not None:
                self.remaining -= 1
                if self.remaining <= 0:
                    self.mode, self.remaining = "none", None
            return mode

    def wait_cleared(self, limit: float) -> None:
        """Block a hanging request until the mode is changed (or `limit` seconds pass)."""
        deadline = time.monotonic() + limit
        with self._lock:
            self.hanging += 1
            try:
                while self.mode == "hang" and time.monotonic() < deadline:
                    self._changed.wait(timeout=min(1.0, deadline - time.monotonic()))
            finally:
                self.hanging -= 1

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "remaining": self.remaining, "hanging": self.hanging}


def _lookup(index: TraceIndex, param: Any) -> TraceEntry | None | str:
    """The entry for a param, None if unknown, or an error text if the param is malformed."""
    if isinstance(param, dict):
        param = param.get("blockHash", param.get("blockNumber"))
    if not isinstance(param, str):
        return "invalid argument 0: expected block hash or number"
    if _HASH_RE.fullmatch(param):
        return index.by_hash.get(param.lower())
    if param in ("latest", "pending", "safe", "finalized"):
        return index.by_number[max(index.by_number)] if index.by_number else None
    if param == "earliest":
        return index.by_number[min(index.by_number)] if index.by_number else None
    if _QUANTITY_RE.fullmatch(param):
        return index.by_number.get(int(param, 16))
    return f"invalid argument 0: hex string without 0x prefix or bad length: {param!r}"


class L2Node:
    """Threaded HTTP server on loopback; `start()` returns the bound port."""

    def __init__(self, index: TraceIndex, host: str = "127.0.0.1", port: int = 0,
                 hang_limit: float = 600.0) -> None:
        self.index = index
        self.fault = FaultState()
        self.hang_limit = hang_limit
        self.requests = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                node.handle_post(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("l2 http " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> int:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="devnet-l2", daemon=True)
        self._thread.start()
        log.info("l2 node listening url=http://%s:%d/ blocks=%d",
                 self._server.server_address[0], self.port, len(self.index.by_hash))
        return self.port

    def stop(self) -> None:
        self.fault.set("none")
        self._server.shutdown()
        self._server.server_close()

    def handle_post(self, req: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length)
        mode = self.fault.take()
        if mode == "hang":
            self.fault.wait_cleared(self.hang_limit)
        if mode == "http500":
            self._send(req, 500, b"devnet fault injection: internal server error\n", "text/plain")
            return
        if mode == "http429":
            self._send(req, 429, b"devnet fault injection: rate limited\n", "text/plain",
                       retry_after=1)
            return
        try:
            payload = json.loads(body)
        except ValueError as exc:
            err = {"code": -32700, "message": str(exc)}
            self._send(req, 200, json.dumps({"jsonrpc": "2.0", "id": None, "error": err}).encode())
            return
        if isinstance(payload, list):
            if not payload:
                err = {"code": -32600, "message": "empty batch"}
                out = json.dumps({"jsonrpc": "2.0", "id": None, "error": err}).encode()
            else:
                out = b"[" + b",".join(self._answer(item, mode) for item in payload) + b"]"
        else:
            out = self._answer(payload, mode)
        self._send(req, 200, out)

    def _answer(self, msg: Any, mode: str) -> bytes:
        if not isinstance(msg, dict) or "method" not in msg:
            err = {"code": -32600, "message": "invalid request"}
            return json.dumps({"jsonrpc": "2.0", "id": None, "error": err}).encode()
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(msg.get("id")).encode()

        def error(code: int, text: str) -> bytes:
            return head + b',"error":' + json.dumps({"code": code, "message": text}).encode() + b"}"

        method = msg["method"]
        if method == HEAD_METHOD:
            # The head is the highest served block: the HTTP generations' prover_height.
            head_number = max(self.index.by_number, default=0)
            return head + b',"result":' + json.dumps(hex(head_number)).encode() + b"}"
        if method != TRACE_METHOD:
            return error(-32601, f"the method {method} does not exist/is not available")
        params = msg.get("params") or []
        if not isinstance(params, list) or not params:
            return error(-32602, "missing value for required argument 0")
        if mode == "error":
            return error(-32000, FAULT_ERROR_TEXT)
        if mode == "null":
            return head + b',"result":null}'
        entry = _lookup(self.index, params[0])
        if isinstance(entry, str):
            return error(-32602, entry)
        if entry is None:
            log.info("l2 trace unknown param=%s", params[0])
            return head + b',"result":null}'
        if mode == "otherblock":
            others = [e for e in self.index.ordered() if e.hash != entry.hash]
            entry = others[0] if others else entry
        elif mode == "badparent":
            trace = json.loads(entry.raw)
            trace["header"]["parentHash"] = BROKEN_PARENT
            return head + b',"result":' + json.dumps(trace).encode() + b"}"
        return head + b',"result":' + entry.raw.strip() + b"}"

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes,
              ctype: str = "application/json", retry_after: int | None = None) -> None:
        try:
            req.send_response(code)
            req.send_header("Content-Type", ctype)
            if retry_after is not None:
                req.send_header("Retry-After", str(retry_after))
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout, during a `hang` fault): nothing to answer.
            log.info("l2 client went away before the answer peer=%s", req.client_address)
