"""Which coordinator session a slot gets: the configured protocol generation, or the one
detected at the first login (`coordinator.protocol: auto`).

The listener calls `SessionFactory.new(slot, account)` for every (re)connection of a slot
and drives what it returns through `roller.protocol.session.CoordinatorSession`. Per slot:
the WS session registers with the slot's prove type; the HTTP session logs in as the
slot's name, declares the slot's prover type (H3+) and asks for the task types that
prover proves (a batch prover also proves bundles from H3 on, spec 5.1).

Failure model: detection spends one fresh challenge per try and nothing else (spec 8.2);
its failures (coordinator down, a refused login, and an outage answer to the challenge
probe: 403, 429, 5xx) raise from `new` like any connection failure and conclude nothing;
the listener retries with backoff. A detected generation is kept for the life of the
process (every slot speaks to the same coordinator) once a session built from it has
connected; until then it is on probation: a session built from it that fails to open
(ConnectionLost, WrongGeneration: e.g. a WS handshake against what was an HTTP coordinator
behind a flaky proxy) forgets it, so the next connection detects again. A WrongGeneration
from a later login forgets it too (the listener calls `forget_detection`).

Detection logs in (spec 8.2 offers no login-free probe past the challenge): on an H3
coordinator the H4 try leaves one `auth message verify failure` in its log, and on H1/H2 a
try with another layout is a login under a foreign key. Pinning `coordinator.protocol`
avoids both; the listener says so at start-up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
from eth_account.signers.local import LocalAccount

from roller.config import WS_PROTOCOLS, RollerConfig, SlotConfig
from roller.errors import ConnectionLost, WrongGeneration
from roller.forks import PRE_FORK
from roller.l2_head import L2Head
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.http_client import (
    DEFAULT_READ_TIMEOUT,
    H4_READ_TIMEOUT,
    Detection,
    HttpCoordinatorClient,
    Timeouts,
    detect_generation,
)
from roller.protocol.http_enums import Generation, ProverType, TaskType
from roller.protocol.messages import ProofDetail, ProveType, TaskMsg
from roller.protocol.session import (
    CoordinatorSession,
    HttpCoordinatorSession,
    WsCoordinatorSession,
)
from roller.redact import redact_url

log = logging.getLogger(__name__)

# What the WS generations register as (the Go roller's version format).
WS_VERSION = "v4.0.2-roller-0.2.0"


def task_types(prove_type: int, generation: Generation) -> tuple[TaskType, ...]:
    """The HTTP task types a slot asks for: a chunk prover chunks; a batch prover batches,
    and bundles where the generation has them."""
    if prove_type == ProveType.BASIC:
        return (TaskType.CHUNK,)
    return (TaskType.BATCH, TaskType.BUNDLE) if generation.rank >= 3 else (TaskType.BATCH,)


def prover_types(prove_type: int) -> tuple[ProverType, ...]:
    return (ProverType.CHUNK,) if prove_type == ProveType.BASIC else (ProverType.BATCH,)


def ws_url_of(url: str) -> str:
    """The WS URL at the address of an http(s) one (auto detection found the WS era)."""
    parts = urlsplit(url)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", *parts[1:]))


AUTO_DETECTION_NOTE = (
    "coordinator.protocol auto: detection logs in with other generations' layouts (an H3 "
    "coordinator logs one 'auth message verify failure', an H1/H2 one may record a login "
    "under a foreign key); pin coordinator.protocol to avoid it")


class _OnProbation:
    """A session built from a detection no session has confirmed yet: its first open either
    confirms the detection or, failing to connect, forgets it (module docstring)."""

    def __init__(self, inner: CoordinatorSession, factory: SessionFactory,
                 detection: Detection) -> None:
        self.inner = inner
        self.generation = inner.generation
        self._factory = factory
        self._detection = detection

    def open(self, on_task: Callable[[TaskMsg], None], idle: Callable[[], bool]) -> None:
        try:
            self.inner.open(on_task, idle)
        except (ConnectionLost, WrongGeneration) as exc:
            log.warning("session of a detected generation failed to connect, detection "
                        "forgotten generation=%s error=%s", self.generation, exc)
            self._factory.forget_detection(self._detection)
            raise
        self._factory.confirm_detection(self._detection)

    @property
    def connected(self) -> bool:
        return self.inner.connected

    @property
    def token_expires(self) -> float | None:
        return self.inner.token_expires

    def submit(self, task: TaskMsg, detail: ProofDetail, account: LocalAccount) -> None:
        self.inner.submit(task, detail, account)

    def poke(self) -> None:
        self.inner.poke()

    def close(self) -> None:
        self.inner.close()


class SessionFactory:
    """`http_session`: makes the requests.Session of each HTTP client and of detection (an
    injected transport for tests; default requests.Session). `held_vks`: the verifying keys
    of the held forks' circuits a slot's H3+ login presents when `coordinator.vks` does not
    name them (the listener reads what its workers published, roller.ledger.vks)."""

    def __init__(self, cfg: RollerConfig,
                 http_session: Callable[[], requests.Session] | None = None,
                 held_vks: Callable[[SlotConfig], tuple[str, ...]] | None = None) -> None:
        self.cfg = cfg
        self._held_vks = held_vks
        self.coordinator = cfg.coordinator
        self.l2_head = L2Head(cfg.trace_endpoint)
        self._lock = threading.Lock()
        self._detected: Detection | None = None
        self._confirmed = False
        self._http_session = http_session or requests.Session
        if self.coordinator.protocol == "auto":
            log.info(AUTO_DETECTION_NOTE)

    def new(self, slot: SlotConfig, account: LocalAccount) -> CoordinatorSession:
        protocol = self.coordinator.protocol
        url = self.cfg.coordinator_url
        four = False
        if protocol == "auto":
            detection = self._detect(slot, account)
            if detection.generation is None:
                session = self._ws(ws_url_of(url), "ws-2023-06", slot, account)
            else:
                session = self._http(url, detection.generation, slot, account,
                                     detection.h2_always_four)
            with self._lock:
                confirmed = self._confirmed and self._detected is detection
            return session if confirmed else _OnProbation(session, self, detection)
        if protocol in WS_PROTOCOLS:
            return self._ws(url, protocol, slot, account)
        return self._http(url, Generation(protocol), slot, account, four)

    def forget_detection(self, detection: Detection | None = None) -> None:
        """Detect again at the next connection (`detection`: only if it is still the kept
        one, so a late failure of an old session does not drop a newer detection)."""
        with self._lock:
            if detection is None or self._detected is detection:
                self._detected = None
                self._confirmed = False

    def confirm_detection(self, detection: Detection) -> None:
        with self._lock:
            if self._detected is detection:
                self._confirmed = True

    def _detect(self, slot: SlotConfig, account: LocalAccount) -> Detection:
        with self._lock:
            if self._detected is None:
                c = self.coordinator
                self._detected = detect_generation(
                    self.cfg.coordinator_url, account, prover_name=slot.name,
                    prover_version=c.prover_version,
                    prover_types=prover_types(slot.prove_type), vks=self._vks(slot),
                    session=self._http_session(), timeouts=self._timeouts(None))
                found = self._detected.generation
                log.info("coordinator generation detected url=%s generation=%s slot=%s",
                         redact_url(self.cfg.coordinator_url),
                         found.value if found else "ws-2023-06", slot.name)
            return self._detected

    def _vks(self, slot: SlotConfig) -> tuple[str, ...]:
        """What an H3+ login presents: `coordinator.vks` when configured (a coordinator with
        a mock verifier takes `mock_vk`), else every held fork's keys for the slot's types."""
        if self.coordinator.vks or self._held_vks is None:
            return self.coordinator.vks
        return self._held_vks(slot)

    def _login_fork(self) -> str:
        """The fork an H2 login names: `coordinator.hard_fork_name`, else the newest held
        fork unless it is the pre-fork one (an empty name: the coordinator's first fork)."""
        if self.coordinator.hard_fork_name:
            return self.coordinator.hard_fork_name
        newest = self.cfg.prover.fork_names[-1] if self.cfg.prover.fork_names else PRE_FORK
        return "" if newest == PRE_FORK else newest

    def _timeouts(self, generation: Generation | None) -> Timeouts:
        read = self.coordinator.request_timeout_seconds or (
            H4_READ_TIMEOUT if generation == Generation.H4 else DEFAULT_READ_TIMEOUT)
        return Timeouts(read=read)

    def _ws(self, url: str, protocol: str, slot: SlotConfig, account: LocalAccount
            ) -> CoordinatorSession:
        client = CoordinatorClient(url, slot=slot.name, variant=protocol)
        return WsCoordinatorSession(client, account, slot.name, slot.prove_type, WS_VERSION)

    def _http(self, url: str, generation: Generation, slot: SlotConfig,
              account: LocalAccount, h2_always_four: bool) -> CoordinatorSession:
        c = self.coordinator
        client = HttpCoordinatorClient(
            url, generation, account, prover_name=slot.name,
            prover_version=c.prover_version,
            prover_types=prover_types(slot.prove_type) if generation.rank >= 3 else (),
            vks=self._vks(slot) if generation.rank >= 3 else (),
            hard_fork_name=self._login_fork() if generation == Generation.H2 else "",
            provider_type=c.provider_type, h2_always_four=h2_always_four,
            session=self._http_session(), timeouts=self._timeouts(generation))
        return HttpCoordinatorSession(
            client, slot=slot.name, task_types=task_types(slot.prove_type, generation),
            prover_height=self.l2_head.height, poll_interval=c.poll_interval_seconds,
            refused_interval=c.refused_interval_seconds,
            failure_backoff=c.failure_backoff_seconds)
