"""Client for the HTTP + JWT coordinator generations H1..H4 (spec coordinator-http-protocol).

    client = HttpCoordinatorClient(url, "http-h3", account, prover_name="roller-0",
                                   prover_version="v4.4.45-...", prover_types=(1, 2),
                                   vks=("mock_vk",))
    task = client.get_task((1, 2), prover_height=l2_head)   # GetTaskResponse | None
    client.submit_proof(SubmitProofRequest.success(task, proof_json))

Failure model:
- Transport failures (connect/read errors, timeouts, HTTP 5xx, a non-JSON answer) raise
  ConnectionLost; the call may be repeated.
- A non-zero envelope raises the mapped roller.protocol.http_errors class; ``permanent``
  says whether the same request can succeed later. HTTP 404 raises WrongGeneration (no
  HTTP coordinator API at that URL, e.g. a WS-era coordinator).
- Login is lazy (first call) and repeated shortly before the JWT expires. A token the
  coordinator refuses on get_task or submit_proof causes one fresh challenge + login and one
  retry: errcode 50001 (``token is expired``, the only trigger the real clients use) and any
  50000 there (``signature is invalid`` after the coordinator rotated its JWT secret, a
  malformed token; on those endpoints 50000 comes from the JWT middleware only). Bounded: one
  re-login per call, and after one the next waits `RELOGIN_BACKOFF_SECONDS`, doubling up to
  `RELOGIN_BACKOFF_MAX_SECONDS` while the new tokens keep being refused (the refusal is raised
  meanwhile). The spec knows no HTTP 401.
- After every login the JWT ``public_key`` claim must equal our key; otherwise the
  coordinator recovered some other key from our signature (wrong RLP layout, so wrong
  generation) and WrongGeneration is raised before any task is fetched (spec 2.5).
- A failure report's normal answer, 20003 ``proof msg status not ok``, is success here.
Tokens and keys never appear in logs or reprs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from eth_account.signers.local import LocalAccount

from roller.errors import ConnectionLost, WireFormatError, WrongGeneration
from roller.protocol import http_jwt
from roller.protocol.encoding import go_dumps
from roller.protocol.http_enums import Generation, ProofStatus, ProviderType, TaskType
from roller.protocol.http_errors import (
    AuthError,
    FailureReportAcknowledged,
    HttpCoordinatorError,
    LoginVerifyFailure,
    NoTaskAvailable,
    TokenExpired,
    error_for,
)
from roller.protocol.http_messages import (
    Envelope,
    GetTaskRequest,
    GetTaskResponse,
    LoginMessage,
    LoginRequest,
    SubmitProofRequest,
    TokenResponse,
    compressed_pk,
)
from roller.redact import describe, redact_url

log = logging.getLogger(__name__)

# A get_task/submit_proof answer that refuses the login token itself (spec 2.4).
TOKEN_REFUSED = frozenset({TokenExpired.code_value, AuthError.code_value})

API_PREFIX = "/coordinator/v1"
# Log in again this long before the login JWT's exp (spec 2.3 "better: decode exp").
RELOGIN_MARGIN_SECONDS = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
# H4 universal get_task builds the witness inside the request (spec 4.1, 8.8).
H4_READ_TIMEOUT = 1800.0
# Re-logins after a refused token: at most one per call, then this pause, doubling.
RELOGIN_BACKOFF_SECONDS = 2.0
RELOGIN_BACKOFF_MAX_SECONDS = 300.0
# Answers to GET /challenge that mean "no HTTP coordinator API here, a WebSocket server"
# (spec 8.2): 404 (no such path), 426 (a WebSocket server asking for the upgrade), and 400 (a
# go-ethereum/gorilla WebSocket endpoint refusing a plain GET). Every other status (403 from a
# WAF, 429 from a proxy, 5xx) is an outage and identifies nothing.
WS_ERA_STATUSES = frozenset({400, 404, 426})


class NotACoordinator(ConnectionLost):
    """HTTP 200 but not a JSON envelope (a proxy page, a JSON-RPC server...)."""


class HttpStatusError(ConnectionLost):
    """An HTTP status other than 200 and 404: retried like any transport failure. Only the
    WS_ERA_STATUSES answer to the challenge tells auto-detection there is no HTTP API there."""

    def __init__(self, endpoint: str, status: int) -> None:
        super().__init__(f"{endpoint}: HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Timeouts:
    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT


def _call(session: requests.Session, method: str, url: str, endpoint: str,
          timeouts: Timeouts, body: Any = None, token: str | None = None) -> Envelope:
    """One request; returns the envelope (errors included) or raises ConnectionLost /
    WrongGeneration. Always sends Content-Type: application/json (spec 1: without it gin
    silently ignores the body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = go_dumps(body).encode() if body is not None else None
    try:
        resp = session.request(method, url, data=data, headers=headers,
                               timeout=(timeouts.connect, timeouts.read))
    except requests.RequestException as exc:
        # The exception text can carry the URL (scrubbed: a gateway's key lives in its path
        # or query) but never headers, so no token leaks.
        raise ConnectionLost(f"{endpoint}: {describe(exc)}") from exc
    if resp.status_code == 404:
        raise WrongGeneration(f"{endpoint}: HTTP 404 from {redact_url(url)}: no HTTP "
                              "coordinator API there")
    if resp.status_code != 200:
        raise HttpStatusError(endpoint, resp.status_code)
    try:
        return Envelope.loads(resp.content)
    except WireFormatError as exc:
        raise NotACoordinator(f"{endpoint}: answer is not a coordinator envelope: {exc}"
                              ) from exc


def fetch_challenge(url: str, timeouts: Timeouts | None = None,
                    session: requests.Session | None = None) -> TokenResponse:
    """`GET /challenge`: the first step of a login, and a harmless probe (a challenge row is
    spent only by a login that uses it)."""
    env = _call(session or requests.Session(), "GET", url.rstrip("/") + API_PREFIX
                + "/challenge", "challenge", timeouts or Timeouts())
    env.raise_for_error("challenge")
    return TokenResponse.from_json(env.data, "data")


class HttpCoordinatorClient:
    def __init__(
        self,
        url: str,
        generation: Generation | str,
        account: LocalAccount,
        *,
        prover_name: str,
        prover_version: str,
        prover_types: Sequence[int] = (),
        vks: Sequence[str] = (),
        hard_fork_name: str = "",
        provider_type: int = ProviderType.INTERNAL,
        h2_always_four: bool = False,
        session: requests.Session | None = None,
        timeouts: Timeouts | None = None,
        relogin_margin: float = RELOGIN_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.relogin_margin = relogin_margin
        self.base_url = url.rstrip("/")
        self.generation = Generation(generation)
        self._account = account
        self.public_key = compressed_pk(account)
        self.prover_name = prover_name
        self.prover_version = prover_version
        self.prover_types = tuple(prover_types)
        self.vks = tuple(vks)
        self.hard_fork_name = hard_fork_name
        self.provider_type = int(provider_type)
        self.h2_always_four = h2_always_four
        self._session = session or requests.Session()
        self.timeouts = timeouts or Timeouts(
            read=H4_READ_TIMEOUT if self.generation == Generation.H4 else DEFAULT_READ_TIMEOUT)
        self._clock = clock
        self._lock = threading.Lock()  # one login at a time; calls may come from 2 threads
        self._token: str | None = None
        self._token_exp = 0.0
        self._margin = relogin_margin
        self._relogins = 0  # consecutive re-logins after refused tokens (backoff)
        self._relogin_at = 0.0  # no token-refusal re-login before this time
        self._refused: HttpCoordinatorError | None = None  # the last refusal, while backing off
        self._granted = False  # the one re-login _may_relogin allowed is still to happen
        self.claims: dict[str, Any] = {}
        # The checked login message: building it validates the per-generation field set now.
        self._message("")

    def __repr__(self) -> str:
        return (f"HttpCoordinatorClient(url={redact_url(self.base_url)!r}, "
                f"generation={self.generation.value!r}, pk={self.public_key[:10]}...)")

    def _url(self, endpoint: str) -> str:
        return f"{self.base_url}{API_PREFIX}/{endpoint}"

    def _message(self, challenge: str) -> LoginMessage:
        gen = self.generation
        return LoginMessage(
            gen, challenge, self.prover_name, self.prover_version,
            hard_fork_name=self.hard_fork_name if gen == Generation.H2 else "",
            prover_types=self.prover_types if gen.rank >= 3 else (),
            vks=self.vks if gen.rank >= 3 else (),
            prover_provider_type=self.provider_type if gen == Generation.H4 else 0,
            h2_always_four=self.h2_always_four,
        )

    # -- auth -------------------------------------------------------------------------

    def challenge(self) -> TokenResponse:
        return fetch_challenge(self.base_url, self.timeouts, self._session)

    def login(self) -> None:
        """Fresh challenge, signed login, JWT identity check (module docstring)."""
        with self._lock:
            self._login_locked()

    def _login_locked(self) -> None:
        challenge = self.challenge().token
        request = LoginRequest.signed(self._message(challenge), self._account)
        env = _call(self._session, "POST", self._url("login"), "login", self.timeouts,
                    request.to_json(), token=challenge)
        env.raise_for_error("login")
        token = TokenResponse.from_json(env.data, "data").token
        try:
            claims = http_jwt.claims(token)
        except http_jwt.JwtError as exc:
            raise WireFormatError("data.token", str(exc)) from exc
        claimed = claims.get("public_key")
        if claimed != self.public_key:
            raise WrongGeneration(
                f"login as {self.generation.value} gave a token for another key "
                f"(claim {'absent' if claimed is None else str(claimed)[:10] + '...'}); the "
                "coordinator hashes another login layout: wrong generation")
        self._token, self.claims = token, claims
        exp = claims.get("exp")
        self._token_exp = float(exp) if isinstance(exp, int | float) else 0.0
        # A token shorter-lived than the margin would be renewed on every call: renew it
        # when three quarters of its life are spent instead.
        self._margin = min(self.relogin_margin, max(self._token_exp - self._clock(), 0) / 4)
        log.info("coordinator login url=%s generation=%s pk=%s exp=%s",
                 redact_url(self.base_url), self.generation.value, self.public_key[:10],
                 int(self._token_exp))

    def _current_token(self) -> str:
        with self._lock:
            if self._token is None and self._refused is not None:
                if not self._granted:
                    if self._clock() < self._relogin_at:
                        # Tokens keep being refused: no login before the backoff has passed.
                        raise self._refused
                    self._bump_backoff()
                self._granted = False
            if self._token is None or (self._token_exp
                                       and self._clock() > self._token_exp - self._margin):
                self._login_locked()
            assert self._token is not None
            return self._token

    def _drop_token(self, used: str) -> None:
        with self._lock:
            if self._token == used:
                self._token = None

    @property
    def logged_in(self) -> bool:
        return self._token is not None

    @property
    def token_expires(self) -> float | None:
        """The login JWT's exp (unix time) while logged in, for operators; None otherwise."""
        return self._token_exp or None if self._token is not None else None

    def _authed(self, endpoint: str, body: dict[str, Any]) -> Envelope:
        """POST with the login JWT; on a refused token log in again and retry once (module
        docstring: bounded, with backoff)."""
        for attempt in (1, 2):
            token = self._current_token()
            env = _call(self._session, "POST", self._url(endpoint), endpoint, self.timeouts,
                        body, token=token)
            if env.errcode not in TOKEN_REFUSED:
                with self._lock:
                    self._relogins, self._relogin_at, self._refused = 0, 0.0, None
                return env
            if attempt == 2 or not self._may_relogin(endpoint, env):
                return env
            log.info("coordinator refused the token endpoint=%s errcode=%d errmsg=%r: "
                     "logging in again", endpoint, env.errcode, env.errmsg)
            self._drop_token(token)
        raise AssertionError("unreachable")

    def _may_relogin(self, endpoint: str, env: Envelope) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._relogin_at:
                return False
            self._refused = error_for(endpoint, env.errcode, env.errmsg)
            self._granted = True
            self._bump_backoff()
            return True

    def _bump_backoff(self) -> None:
        """One more re-login after refused tokens: the next waits twice as long (lock held)."""
        self._relogins += 1
        self._relogin_at = self._clock() + min(
            RELOGIN_BACKOFF_SECONDS * 2 ** (self._relogins - 1), RELOGIN_BACKOFF_MAX_SECONDS)

    # -- tasks --------------------------------------------------------------------------

    def get_task_request(self, task_types: Sequence[int], prover_height: int) -> GetTaskRequest:
        gen = self.generation
        types = tuple(int(t) for t in task_types)
        for i, t in enumerate(types):
            if t not in (TaskType.CHUNK, TaskType.BATCH, TaskType.BUNDLE):
                raise WireFormatError(f"task_types[{i}]", f"unknown task type {t}")
        if gen.rank >= 3:
            return GetTaskRequest(gen, prover_height, task_types=types,
                                  universal=gen == Generation.H4)
        # H1/H2 take one type; 0 means "random chunk or batch".
        one = types[0] if len(types) == 1 else 0
        if one == TaskType.BUNDLE:
            raise WireFormatError("task_types", f"{gen.value} has no bundle tasks")
        return GetTaskRequest(gen, prover_height, task_type=one)

    def get_task(self, task_types: Sequence[int], prover_height: int
                 ) -> GetTaskResponse | None:
        """One task or None on 20004 (``get empty prover task``)."""
        request = self.get_task_request(task_types, prover_height)
        env = self._authed("get_task", request.to_json())
        if env.errcode == NoTaskAvailable.code_value:
            return None
        env.raise_for_error("get_task")
        task = GetTaskResponse.from_json(env.data, "data", generation=self.generation)
        log.info("coordinator task task_id=%s uuid=%s type=%s", task.task_id, task.uuid,
                 task.task_type)
        return task

    def submit_proof(self, request: SubmitProofRequest) -> None:
        """Returns when the coordinator took the proof or the failure report; raises the
        mapped error otherwise."""
        env = self._authed("submit_proof", request.to_json())
        try:
            env.raise_for_error("submit_proof")
        except FailureReportAcknowledged:
            if request.status == ProofStatus.OK:
                raise
            # The normal answer to a failure report (spec 6.3), not an error.

    def close(self) -> None:
        self._session.close()


# -- generation auto-detection (spec 8.2) ----------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """``generation`` None: no HTTP coordinator there (use the WS protocol)."""

    generation: Generation | None
    h2_always_four: bool = False


def detect_generation(url: str, account: LocalAccount, *, prover_name: str,
                      prover_version: str, prover_types: Sequence[int] = (),
                      vks: Sequence[str] = (), session: requests.Session | None = None,
                      timeouts: Timeouts | None = None) -> Detection:
    """Probe with fresh challenges: H4, then H3 on `auth message verify failure`, then the H1
    layout whenever a login succeeds under a foreign key. Each try spends one challenge row
    and nothing else. Refusals other than those (version, vk) propagate: they are
    operator problems, not a generation question."""
    session = session or requests.Session()
    timeouts = timeouts or Timeouts()
    try:
        env = _call(session, "GET", url.rstrip("/") + API_PREFIX + "/challenge", "challenge",
                    timeouts)
    except HttpStatusError as exc:
        if exc.status not in WS_ERA_STATUSES:
            # 403 (a WAF), 429 (a proxy's rate limit), 5xx: an outage, not an answer. The
            # caller retries with backoff; nothing is concluded or kept.
            raise
        log.info("detect url=%s HTTP %d to the challenge: WS era", redact_url(url),
                 exc.status)
        return Detection(None)
    except WrongGeneration:
        # HTTP 404: no such path, so no HTTP coordinator API. No HTTP at all (ConnectionLost,
        # propagated) is indistinguishable from an outage.
        log.info("detect url=%s no HTTP coordinator API: WS era", redact_url(url))
        return Detection(None)
    # A 200 that is not a challenge envelope (NotACoordinator, an error envelope) identifies
    # nothing either: a captive portal or a proxy page must not pin the WS era for good.
    env.raise_for_error("challenge")

    def client(gen: Generation, four: bool = False) -> HttpCoordinatorClient:
        return HttpCoordinatorClient(url, gen, account, prover_name=prover_name,
                                     prover_version=prover_version, prover_types=prover_types,
                                     vks=vks, h2_always_four=four, session=session,
                                     timeouts=timeouts)

    for gen in (Generation.H4, Generation.H3):
        try:
            client(gen).login()
            return Detection(gen)
        except LoginVerifyFailure:
            continue  # H3 rejects the H4 layout by verifying the signature
        except WrongGeneration:
            break  # an H1/H2 coordinator recovered a random key: try the H1 layout
    try:
        h1 = client(Generation.H1)
        h1.login()
        return Detection(Generation.H2 if "hard_fork_name" in h1.claims else Generation.H1)
    except WrongGeneration:
        client(Generation.H2, four=True).login()  # v4.3.86..88; raises if still foreign
        return Detection(Generation.H2, h2_always_four=True)
