"""The config's model: one frozen dataclass per section of the config file, and the names
(environment variables, protocols, proof kinds) every process reads it by.

Failure model: the dataclasses hold what `roller.config.load` validated; the only error
raised here is `RollerConfig.slot` naming a slot the config does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from roller.errors import ConfigError
from roller.redact import redact_url

ENV_CONFIG = "ROLLER_CONFIG"
ENV_KEYSTORE_PASSWORD = "ROLLER_KEYSTORE_PASSWORD"
ENV_BROKER_URL = "ROLLER_BROKER_URL"
ENV_BROKER_PASSWORD = "ROLLER_BROKER_PASSWORD"
ENV_FLOWER_PASSWORD = "ROLLER_FLOWER_PASSWORD"

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
PROVE_TYPES = {0: "chunk", 1: "batch"}


PROOF_KINDS = {0: "chunk", 1: "batch", 2: "bundle"}


def proof_kind(prove_type: int) -> str:
    """How operators name a task or prove type (logs, job labels, metrics): 0 chunk, 1 batch,
    2 bundle (HTTP generations H3+; proved by batch slots)."""
    return PROOF_KINDS.get(prove_type, f"type-{prove_type}")


@dataclass(frozen=True)
class SlotConfig:
    """One prover slot: one identity, one coordinator session, one queue (of one GPU).
    Several slots share a queue with `identities_per_gpu` > 1 (or slots naming one queue)."""

    name: str
    queue: str
    gpu: int | None
    prove_type: int
    keystore_path: Path


WS_PROTOCOLS = ("ws-2023-06", "ws-2023-07")
HTTP_PROTOCOLS = ("http-h1", "http-h2", "http-h3", "http-h4")
PROTOCOLS = (*WS_PROTOCOLS, *HTTP_PROTOCOLS, "auto")
# What an HTTP login sends unless the operator says otherwise. v4.4.45 is the high
# min_prover_version of Scroll's sample config: a v4.4.47+ coordinator wants exactly one of
# its configured minimum versions before the first '-' (spec coordinator-http-protocol 5.1),
# so operators of other coordinators set `coordinator.prover_version` verbatim.
DEFAULT_HTTP_PROVER_VERSION = "v4.4.45-roller"


@dataclass(frozen=True)
class CoordinatorConfig:
    """How the listener speaks to the coordinator at `coordinator_url`.

    ``protocol``: a WS generation (ws:// URL; ws-2023-06 is the default there), an HTTP one
    (http(s):// URL; ``auto`` is the default there: the generation is detected at the first
    login, spec 8.2). The other fields matter to the HTTP generations only."""

    protocol: str = "ws-2023-06"
    prover_version: str = DEFAULT_HTTP_PROVER_VERSION
    hard_fork_name: str = ""  # http-h2 login (empty: the coordinator's first fork)
    vks: tuple[str, ...] = ()  # http-h3+ login; empty skips nothing on a mock coordinator
    provider_type: int = 1  # http-h4: 1 internal, 2 external
    poll_interval_seconds: float = 15.0
    refused_interval_seconds: float = 60.0
    # After a failure report: no new task for this long, doubling per consecutive report.
    failure_backoff_seconds: float = 30.0
    request_timeout_seconds: float | None = None  # None: 60 s, 1800 s for http-h4

    @property
    def http(self) -> bool:
        return self.protocol not in WS_PROTOCOLS


@dataclass(frozen=True)
class ForkConfig:
    """A hard fork this host holds (roller.forks): its name in Scroll's spelling and where its
    circuit parameters live (each fork's circuits are built and kept apart there)."""

    name: str
    params_path: Path


@dataclass(frozen=True)
class ProverConfig:
    params_path: Path
    seed_path: Path | None
    dump_dir: Path | None
    library_path: Path | None
    abi: str
    chain_id: int | None = None  # the chain proved for; None: the traces' chainID
    # The forks held, oldest first; a config without `prover.forks` holds one: homestead (the
    # pre-fork rules every earlier release proved), with `params_path`.
    forks: tuple[ForkConfig, ...] = ()

    def fork(self, name: str) -> ForkConfig | None:
        """The held fork of that (canonical) name, or None."""
        return next((f for f in self.forks if f.name == name), None)

    @property
    def fork_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.forks)


# How often the listener sweeps a slot's in-flight records: one pipelined read each, so a
# short period is cheap, and it bounds how soon a dead worker's task moves on (two sweeps:
# the one that sees it dead, the one after the grace).
RECONCILE_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class RetryConfig:
    max_prove_attempts: int = 3  # started attempts per assignment
    # Started attempts per task id, across re-assignments: below the coordinator's
    # `session_attempts` (5 in Scroll's sample configs), so one roller never spends a shared
    # coordinator's whole budget on a task (issue 22).
    max_task_attempts: int = 4
    # Wall time of one trace fetch, its retries and rate-limit waits included: the one bound
    # of trace retries (roller.worker.trace_client; `trace_retries` is no more, see load.py).
    trace_budget_seconds: float = 300.0
    submit_backoff_seconds: float = 2.0
    submit_backoff_max_seconds: float = 120.0
    reconnect_backoff_seconds: float = 1.0
    reconnect_backoff_max_seconds: float = 60.0


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = "127.0.0.1"
    listener_port: int = 9464
    worker_port: int = 9465


@dataclass(frozen=True)
class FlowerConfig:
    address: str = "127.0.0.1"
    port: int = 5555
    basic_auth: str | None = field(default=None, repr=False)
    db_path: Path = Path("flower.db")


@dataclass(frozen=True)
class RollerConfig:
    """The whole config. Secrets stay out of `repr`: the keystore password, the broker URL
    (it carries the broker password) and Flower's credentials are left out, the coordinator
    and trace URLs are shown redacted (their path or query may hold an API key).

    ``keystore_password`` is empty in a process that holds no keys (workers, Flower: on a
    fleet their environment lacks it); loading a keystore with it refuses."""

    roller_name: str
    keystore_password: str = field(repr=False)
    coordinator_url: str
    trace_endpoint: str
    db_path: Path
    broker_url: str = field(repr=False)
    prover: ProverConfig
    slots: tuple[SlotConfig, ...]
    coordinator: CoordinatorConfig = CoordinatorConfig()
    session_window_minutes: float = 180.0
    retention_hours: float = 72.0
    reconcile_interval_seconds: float = RECONCILE_INTERVAL_SECONDS
    visibility_timeout_seconds: int = 86400
    retry: RetryConfig = RetryConfig()
    metrics: MetricsConfig = MetricsConfig()
    flower: FlowerConfig = FlowerConfig()

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("coordinator_url", "trace_endpoint"):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"RollerConfig({', '.join(shown)})"

    @property
    def window_seconds(self) -> float:
        return self.session_window_minutes * 60

    @property
    def retention_seconds(self) -> float:
        return self.retention_hours * 3600

    def slot(self, name: str) -> SlotConfig:
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise ConfigError(f"slots: no slot named {name!r}")
