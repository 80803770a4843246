"""Which coordinator session a slot gets: the configured protocol generation, or the one
detected at the first login (`coordinator.protocol: auto`).

The listener calls `SessionFactory.new(slot, account)` for every (re)connection of a slot
and drives what it returns through `roller.protocol.session.CoordinatorSession`. Per slot:
the WS session registers with the slot's prove type; the HTTP session logs in as the
slot's name, declares the slot's prover type (H3+) and asks for the task types that
prover proves (a batch prover also proves bundles from H3 on, spec 5.1).

Failure model: detection spends one fresh challenge per try and nothing else (spec 8.2);
its failures (coordinator down, a refused login) raise from `new` like any connection
failure, and the listener retries with backoff. A detected generation is kept for the
life of the process (every slot speaks to the same coordinator); a WrongGeneration from a
later login forgets it, so the next connection detects again.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

from eth_account.signers.local import LocalAccount

from roller.config import WS_PROTOCOLS, RollerConfig, SlotConfig
from roller.l2_head import L2Head
from roller.protocol.coordinator_client import CoordinatorClient, redact_url
from roller.protocol.http_client import (
    DEFAULT_READ_TIMEOUT,
    H4_READ_TIMEOUT,
    Detection,
    HttpCoordinatorClient,
    Timeouts,
    detect_generation,
)
from roller.protocol.http_messages import Generation, ProverType, TaskType
from roller.protocol.messages import ProveType
from roller.protocol.session import (
    CoordinatorSession,
    HttpCoordinatorSession,
    WsCoordinatorSession,
)

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


class SessionFactory:
    def __init__(self, cfg: RollerConfig) -> None:
        self.cfg = cfg
        self.coordinator = cfg.coordinator
        self.l2_head = L2Head(cfg.trace_endpoint)
        self._lock = threading.Lock()
        self._detected: Detection | None = None

    def new(self, slot: SlotConfig, account: LocalAccount) -> CoordinatorSession:
        protocol = self.coordinator.protocol
        url = self.cfg.coordinator_url
        four = False
        if protocol == "auto":
            detection = self._detect(slot, account)
            if detection.generation is None:
                return self._ws(ws_url_of(url), "ws-2023-06", slot, account)
            protocol, four = detection.generation.value, detection.h2_always_four
        if protocol in WS_PROTOCOLS:
            return self._ws(url, protocol, slot, account)
        return self._http(url, Generation(protocol), slot, account, four)

    def forget_detection(self) -> None:
        with self._lock:
            self._detected = None

    def _detect(self, slot: SlotConfig, account: LocalAccount) -> Detection:
        with self._lock:
            if self._detected is None:
                c = self.coordinator
                self._detected = detect_generation(
                    self.cfg.coordinator_url, account, prover_name=slot.name,
                    prover_version=c.prover_version,
                    prover_types=prover_types(slot.prove_type), vks=c.vks,
                    timeouts=self._timeouts(None))
                found = self._detected.generation
                log.info("coordinator generation detected url=%s generation=%s slot=%s",
                         redact_url(self.cfg.coordinator_url),
                         found.value if found else "ws-2023-06", slot.name)
            return self._detected

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
            vks=c.vks if generation.rank >= 3 else (),
            hard_fork_name=c.hard_fork_name if generation == Generation.H2 else "",
            provider_type=c.provider_type, h2_always_four=h2_always_four,
            timeouts=self._timeouts(generation))
        return HttpCoordinatorSession(
            client, slot=slot.name, task_types=task_types(slot.prove_type, generation),
            prover_height=self.l2_head.height, poll_interval=c.poll_interval_seconds,
            refused_interval=c.refused_interval_seconds)
