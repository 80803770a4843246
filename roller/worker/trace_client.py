"""L2 block trace fetching (spec 6.6, 9): one JSON-RPC batch over HTTP, checked, sorted by number.

Traces stay opaque dicts to the prover; the client reads only the header fields that tie an
answer to the request. Every answer must be the block asked for before it reaches the
prover (TraceMismatch otherwise, naming the block): `header.hash` equals the requested
hash, the numbers are consecutive, each `header.parentHash` is the previous block's hash,
and `chainID`, where a trace carries one, is the configured chain (or, unconfigured, one
chain for the whole chunk).

Failure model. One rule, one number: a fetch retries what is transient for as long as its
deadline allows, `budget_seconds` (config `retry.trace_budget_seconds`, default 300 s) from
its start or, if sooner, the end of the task's session window (`seconds_left`), and only
then gives up (TraceFetchError: `trace fetch failed after N attempts in S s (trace budget B s
spent) ...`). No attempt starts after the deadline; the one under way may still run its
`timeout`. Transient: transport failures (connection refused or reset, timeouts), HTTP 5xx,
JSON-RPC server errors (-32000..-32099) and null traces (a node down, overloaded, restarting
or not yet synced), retried after a capped exponential backoff with jitter (`backoff`,
doubling, TRANSIENT_BACKOFF_MAX_SECONDS); HTTP 429 (a rate-limited hosted RPC), retried
after its `Retry-After` (else `backoff`, doubling), at most RATE_LIMIT_BACKOFF_MAX_SECONDS a
wait, and reported at once when the node asks for a wait past the deadline. Every other
answer is final at once: HTTP 4xx, a refused batch, invalid params, malformed traces,
traces of other blocks (TraceMismatch). `retries` caps the transient retries of callers
that want a quick answer more than a trace (the prefetcher: the job fetches again); the
job's client has none. Each retry is told to `on_retry` (the job counts it: metrics), or
logged when nobody listens. Error texts never carry the endpoint's path, query or userinfo
(a hosted RPC's API key): foreign exception texts pass through roller.redact.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from roller.errors import ConfigError, TraceFetchError, TraceMismatch, WireFormatError
from roller.logs import kv
from roller.protocol.encoding import parse_hash
from roller.redact import describe, redact_url, scrub

log = logging.getLogger(__name__)

TRACE_METHOD = "scroll_getBlockTraceByNumberOrHash"
_HEX_QUANTITY_RE = re.compile(r"0x[0-9a-fA-F]+")
# One fetch (all its retries) gives up after this long: the job reports the failure rather
# than hold its GPU for a node that stays rate-limited or down. Long enough to ride out a
# node restart or a short outage, which would otherwise cost a failure report and one of
# the coordinator's attempts at the task (shared by every prover of the network).
DEFAULT_BUDGET_SECONDS = 300.0
# The longest wait between transient failures (backoff 1, 2, 4, 8, 15, 15 s...). Why 15 s:
# the end of an outage is noticed within 15 s, so the GPU idles at most that long past it,
# while a node that stays down is asked at most four times a minute by each job, a load no
# node notices even from a whole fleet. A longer cap would save nothing and cost minutes of
# proving per outage.
TRANSIENT_BACKOFF_MAX_SECONDS = 15.0
# Each transient wait is shortened by a random share up to this (it lies in (d/2, d]): the
# jobs of a fleet lose the node at the same moment and would otherwise retry in lockstep, a
# burst on every step, the largest one just as the node comes back.
JITTER_SHARE = 0.5
# Backoff between 429 answers without a usable Retry-After, and the longest wait one 429
# may ask for (a longer one is waited in steps, each re-asking the node).
RATE_LIMIT_BACKOFF_MAX_SECONDS = 30.0


class Response(Protocol):
    status_code: int
    headers: Any

    def json(self) -> Any: ...


class Transport(Protocol):
    """What the client needs of `requests.Session` (tests inject a fake)."""

    def post(self, url: str, *, json: Any, timeout: float) -> Response: ...


@dataclass(frozen=True)
class Retry:
    """One retry of a fetch, told to the caller before its wait: the attempt that failed
    (from 1), the wait before the next one, what failed (`reason`, a metric label: one of
    RETRY_REASONS) and the failure's text (no endpoint in it)."""

    attempt: int
    delay: float
    reason: str
    error: str


RETRY_REASONS = ("connection", "timeout", "http_5xx", "rpc_error", "null_trace", "rate_limited")


class _Retryable(Exception):
    """A failure worth retrying: connection error, timeout, HTTP 5xx, a JSON-RPC server error
    or a null trace (a node that is down, overloaded or not yet synced to the block).
    `reason`: one of RETRY_REASONS."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text)
        self.reason = reason


class _RateLimited(_Retryable):
    """HTTP 429: retried after the node's Retry-After, not counted against `retries`."""

    def __init__(self, text: str, retry_after: float | None) -> None:
        super().__init__(text, "rate_limited")
        self.retry_after = retry_after


class TraceClient:
    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 60.0,
        retries: int | None = None,
        backoff: float = 1.0,
        budget_seconds: float = DEFAULT_BUDGET_SECONDS,
        chain_id: int | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """`retries`: at most this many transient retries per fetch (None: the deadline
        alone bounds them); `backoff`: the first transient (and 429) wait; `jitter`: a
        number in [0, 1) per wait (tests inject a constant)."""
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(f"trace_endpoint must be an http(s) URL, got "
                              f"{redact_url(endpoint)!r}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.budget_seconds = budget_seconds
        self.chain_id = chain_id
        self._transport: Transport = transport or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    def __repr__(self) -> str:
        return f"TraceClient(endpoint={redact_url(self.endpoint)!r})"

    def get_traces(self, block_hashes: Sequence[str], *, seconds_left: float | None = None,
                   on_retry: Callable[[Retry], None] | None = None) -> list[dict[str, Any]]:
        """Fetch the traces of ``block_hashes`` in one batch; checked, ascending by number.

        `seconds_left`: how long the caller may still use the traces (the task's session
        window); retries stop at the sooner of it and the budget. `on_retry` is told of each
        retry before its wait (it replaces the client's own log line)."""
        hashes = [self._normalise(h) for h in block_hashes]
        if not hashes:
            return []
        batch = [{"jsonrpc": "2.0", "id": i, "method": TRACE_METHOD, "params": [h]}
                 for i, h in enumerate(hashes)]
        answers = self._post_with_retries(batch, hashes, seconds_left, on_retry)
        traces = [(self._block_number(answers, i, h), h, answers[i])
                  for i, h in enumerate(hashes)]
        traces.sort(key=lambda item: item[0])
        self._check_chain(traces)
        return [trace for _, _, trace in traces]

    def get_traces_json(self, block_hashes: Sequence[str], *,
                        seconds_left: float | None = None,
                        on_retry: Callable[[Retry], None] | None = None) -> str:
        """The sorted traces as one compact JSON array, the prover's input."""
        return json.dumps(self.get_traces(block_hashes, seconds_left=seconds_left,
                                          on_retry=on_retry), separators=(",", ":"))

    @staticmethod
    def _normalise(block_hash: str) -> str:
        try:
            return parse_hash(block_hash, "block_hash")
        except WireFormatError as exc:
            raise TraceFetchError(f"invalid block hash {block_hash!r}: {exc}") from exc

    def _post_with_retries(self, batch: list[dict[str, Any]], hashes: list[str],
                           seconds_left: float | None,
                           on_retry: Callable[[Retry], None] | None) -> dict[int, Any]:
        started = self._clock()
        if seconds_left is not None and seconds_left < self.budget_seconds:
            deadline, bound = started + max(seconds_left, 0.0), "session window closes"
        else:
            deadline, bound = started + self.budget_seconds, (f"trace budget "
                                                              f"{self.budget_seconds:g}s spent")
        transient = 0  # transient failures so far (not 429s)
        limited = 0
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._post(batch, hashes)
            except _RateLimited as exc:
                limited += 1
                delay = (exc.retry_after if exc.retry_after is not None
                         else self.backoff * 2 ** min(limited - 1, 16))
                delay = min(max(delay, 0.0), RATE_LIMIT_BACKOFF_MAX_SECONDS)
                if self._clock() + delay > deadline:
                    # The node itself says it will not answer before the deadline.
                    raise self._give_up(attempts, started, hashes, exc, bound) from exc
                reason: _Retryable = exc
            except _Retryable as exc:
                if self.retries is not None and transient >= self.retries:
                    raise self._give_up(attempts, started, hashes, exc,
                                        f"retry cap {self.retries}") from exc
                step = min(self.backoff * 2 ** min(transient, 16), TRANSIENT_BACKOFF_MAX_SECONDS)
                delay = step * (1.0 - JITTER_SHARE * self._jitter())
                transient += 1
                # The last wait ends at the deadline: one more attempt there rather than
                # giving up up to a whole step early (the node may be back by then).
                delay = min(delay, deadline - self._clock())
                if delay <= 0:
                    raise self._give_up(attempts, started, hashes, exc, bound) from exc
                reason = exc
            retry = Retry(attempts, delay, reason.reason, str(reason))
            if on_retry is not None:
                on_retry(retry)
            else:
                log.warning("trace fetch retry %s", kv(attempt=attempts, delay=f"{delay:.1f}s",
                                                       reason=retry.reason, error=retry.error))
            self._sleep(delay)

    def _give_up(self, attempts: int, started: float, hashes: list[str], exc: Exception,
                 why: str) -> TraceFetchError:
        return TraceFetchError(f"trace fetch failed after {attempts} attempts in "
                               f"{self._clock() - started:.0f}s ({why}) for blocks "
                               f"{', '.join(hashes)}: {exc}")

    def _post(self, batch: list[dict[str, Any]], hashes: list[str]) -> dict[int, Any]:
        """One batch round trip; returns id -> result, raising TraceFetchError for RPC errors."""
        try:
            response = self._transport.post(self.endpoint, json=batch, timeout=self.timeout)
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise _Retryable(describe(exc), "timeout") from exc
        except requests.ConnectionError as exc:
            raise _Retryable(describe(exc), "connection") from exc
        except requests.RequestException as exc:
            raise TraceFetchError(f"L2 node request failed for blocks {', '.join(hashes)}: "
                                  f"{describe(exc)}") from exc
        if response.status_code == 429:
            raise _RateLimited("HTTP 429 (rate limited)",
                               _retry_after(response.headers, time.time()))
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", "http_5xx")
        if response.status_code != 200:
            raise TraceFetchError(f"L2 node answered HTTP {response.status_code} for blocks "
                                  f"{', '.join(hashes)}")
        try:
            body = response.json()
        except (ValueError, RecursionError) as exc:
            raise TraceFetchError(f"L2 node answered invalid JSON: {scrub(str(exc))}") from exc
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
                raise (_Retryable(text, "rpc_error") if _server_error(item)
                       else TraceFetchError(text))
            answers[request_id] = item.get("result")
        for request_id, trace in answers.items():
            if trace is None:
                raise _Retryable(f"block {hashes[request_id]}: trace not found (null result)",
                                 "null_trace")
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
        got = header.get("hash") if isinstance(header, dict) else None
        if not isinstance(got, str) or got.lower() != block_hash:
            raise TraceMismatch(block_hash, f"the L2 node answered the trace of another block "
                                            f"(header.hash {str(got)[:80]!r})")
        return int(number, 16)

    def _check_chain(self, traces: list[tuple[int, str, dict[str, Any]]]) -> None:
        """Consecutive numbers, each parentHash the previous block's hash, one chain id."""
        chain = self.chain_id
        for k, (number, block, trace) in enumerate(traces):
            trace_chain = trace.get("chainID")
            if trace_chain is not None:
                if chain is None:
                    chain = trace_chain
                elif trace_chain != chain:
                    raise TraceMismatch(block, f"trace of chain {trace_chain!r}, expected "
                                               f"chain {chain}")
            if k == 0:
                continue
            prev_number, prev_block, _ = traces[k - 1]
            if number != prev_number + 1:
                raise TraceMismatch(block, f"block number {number} does not follow block "
                                           f"{prev_block} (number {prev_number})")
            parent = trace["header"].get("parentHash")
            if not isinstance(parent, str) or parent.lower() != prev_block:
                raise TraceMismatch(block, f"header.parentHash {str(parent)[:80]!r} is not "
                                           f"the previous block {prev_block}")


def _retry_after(headers: Any, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    value = headers.get("Retry-After") if headers is not None else None
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def _server_error(item: dict[str, Any]) -> bool:
    """JSON-RPC implementation-defined server errors (-32000..-32099), e.g. geth's
    "header not found" while the node catches up; invalid params are not retried."""
    error = item.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return isinstance(code, int) and -32099 <= code <= -32000


def _describe_error(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return scrub(f"{error.get('code')} {error.get('message')}")
    return scrub(repr(body)[:200])
