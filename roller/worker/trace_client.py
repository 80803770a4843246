"""L2 block trace fetching (spec 6.6, 9): one JSON-RPC batch over HTTP, sorted by number.

Traces stay opaque dicts; only ``header.number`` is read (for sorting) and validated.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from roller.errors import ConfigError, TraceFetchError, WireFormatError
from roller.protocol.encoding import parse_hash

log = logging.getLogger(__name__)

TRACE_METHOD = "scroll_getBlockTraceByNumberOrHash"
_HEX_QUANTITY_RE = re.compile(r"0x[0-9a-fA-F]+")


class _Retryable(Exception):
    """A failure worth retrying: connection error, timeout, HTTP 5xx, a JSON-RPC server error
    or a null trace (a node that is down, overloaded or not yet synced to the block)."""


class TraceClient:
    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(f"trace_endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session = requests.Session()

    def get_traces(self, block_hashes: Sequence[str]) -> list[dict[str, Any]]:
        """Fetch the traces of ``block_hashes`` in one batch; ascending by block number."""
        hashes = [self._normalise(h) for h in block_hashes]
        if not hashes:
            return []
        batch = [{"jsonrpc": "2.0", "id": i, "method": TRACE_METHOD, "params": [h]}
                 for i, h in enumerate(hashes)]
        answers = self._post_with_retries(batch, hashes)
        traces = [(self._block_number(answers, i, h), answers[i]) for i, h in enumerate(hashes)]
        traces.sort(key=lambda pair: pair[0])
        return [trace for _, trace in traces]

    def get_traces_json(self, block_hashes: Sequence[str]) -> str:
        """The sorted traces as one compact JSON array, the prover's input."""
        return json.dumps(self.get_traces(block_hashes), separators=(",", ":"))

    @staticmethod
    def _normalise(block_hash: str) -> str:
        try:
            return parse_hash(block_hash, "block_hash")
        except WireFormatError as exc:
            raise TraceFetchError(f"invalid block hash {block_hash!r}: {exc}") from exc

    def _post_with_retries(self, batch: list[dict[str, Any]], hashes: list[str]) -> dict[int, Any]:
        attempt = 0
        while True:
            try:
                return self._post(batch, hashes)
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise TraceFetchError(
                        f"trace fetch failed after {attempt + 1} attempts for blocks "
                        f"{', '.join(hashes)}: {exc}"
                    ) from exc
                delay = self.backoff * (2**attempt)
                log.warning("trace fetch retry attempt=%d delay=%.1fs reason=%s",
                            attempt + 1, delay, exc)
                time.sleep(delay)
                attempt += 1

    def _post(self, batch: list[dict[str, Any]], hashes: list[str]) -> dict[int, Any]:
        """One batch round trip; returns id -> result, raising TraceFetchError for RPC errors."""
        try:
            response = self._session.post(self.endpoint, json=batch, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise TraceFetchError(f"L2 node answered HTTP {response.status_code} for blocks "
                                  f"{', '.join(hashes)}")
        try:
            body = response.json()
        except (ValueError, RecursionError) as exc:
            raise TraceFetchError(f"L2 node answered invalid JSON: {exc}") from exc
        if not isinstance(body, list):
            # A single error object answers a batch the node refused as a whole.
            raise TraceFetchError(f"L2 node refused the batch for blocks {', '.join(hashes)}: "
                                  f"{_describe_error(body)}")
        answers: dict[int, Any] = {}
        for item in body:
            request_id = item.get("id") if isinstance(item, dict) else None
            if (not isinstance(request_id, int) or isinstance(request_id, bool)
                    or not 0 <= request_id < len(hashes)):
                continue
            if item.get("error") is not None:
                text = f"block {hashes[request_id]}: L2 node error {_describe_error(item)}"
                raise (_Retryable(text) if _server_error(item) else TraceFetchError(text))
            answers[request_id] = item.get("result")
        for request_id, trace in answers.items():
            if trace is None:
                raise _Retryable(f"block {hashes[request_id]}: trace not found (null result)")
        return answers

    @staticmethod
    def _block_number(answers: dict[int, Any], index: int, block_hash: str) -> int:
        if index not in answers:
            raise TraceFetchError(f"block {block_hash}: no answer in the batch response")
        trace = answers[index]
        if trace is None:
            raise TraceFetchError(f"block {block_hash}: trace not found (null result)")
        header = trace.get("header") if isinstance(trace, dict) else None
        number = header.get("number") if isinstance(header, dict) else None
        if not isinstance(number, str) or not _HEX_QUANTITY_RE.fullmatch(number):
            raise TraceFetchError(f"block {block_hash}: trace has no hex header.number")
        return int(number, 16)


def _server_error(item: dict[str, Any]) -> bool:
    """JSON-RPC implementation-defined server errors (-32000..-32099), e.g. geth's
    "header not found" while the node catches up; invalid params are not retried."""
    error = item.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return isinstance(code, int) and -32099 <= code <= -32000


def _describe_error(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code')} {error.get('message')}"
    return repr(body)[:200]
