"""The L2 node's head height: the `prover_height` the HTTP coordinator generations want.

A chunk is dispatched only when its last block is at or below the height a prover sends
(spec coordinator-http-protocol 4.1: v4.1.x and v4.4.59+ filter on it, H2 clamps to it, H4
substitutes its own head for 0), so a client must send a realistic head in every
generation. One `eth_blockNumber` call to the configured `trace_endpoint` (the node the
workers fetch traces from: a chunk it cannot serve yet is no use to us anyway).

Failure model: the answer is cached for ``ttl`` seconds (polls of many slots share one
call); a failed call raises TraceFetchError, naming the endpoint without credentials, and
the caller skips that poll. A height never goes backwards within a process: a node
behind a load balancer that answers an older head does not withdraw tasks we could prove.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from roller.errors import TraceFetchError
from roller.redact import describe, redact_url

HEAD_METHOD = "eth_blockNumber"
DEFAULT_TTL_SECONDS = 5.0


class L2Head:
    def __init__(self, endpoint: str, *, ttl: float = DEFAULT_TTL_SECONDS,
                 timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise TraceFetchError(f"trace_endpoint must be an http(s) URL, got "
                                  f"{redact_url(endpoint)!r}")
        self.endpoint = endpoint
        self.ttl = ttl
        self.timeout = timeout
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._height = 0
        self._fetched_at: float | None = None

    def height(self) -> int:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.ttl:
                self._height = max(self._height, self._fetch())
                self._fetched_at = now
            return self._height

    def _fetch(self) -> int:
        where = redact_url(self.endpoint)
        try:
            resp = self._session.post(self.endpoint, json={"jsonrpc": "2.0", "id": 1,
                                                           "method": HEAD_METHOD, "params": []},
                                      timeout=self.timeout)
            body = resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError) as exc:
            raise TraceFetchError(f"L2 head from {where}: {describe(exc)}") from exc
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, str) or not result.startswith("0x"):
            raise TraceFetchError(f"L2 head from {where}: no hex {HEAD_METHOD} result "
                                  f"(HTTP {resp.status_code})")
        try:
            return int(result, 16)
        except ValueError as exc:
            raise TraceFetchError(f"L2 head from {where}: {result[:40]!r} is not a "
                                  "hex quantity") from exc
