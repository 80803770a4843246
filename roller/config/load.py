"""Reading the config file: the seed roller's config.json plus our extensions.

A seed config (one `keystore_path`, `prover.prove_type`) means one slot on queue `gpu0`.
Extensions: `broker_url`, `coordinator` (the protocol generation and its login settings),
`slots` (or the `gpus` shorthand), `identities_per_gpu`, `session_window_minutes`,
`retention_hours`, `reconcile_interval_seconds`,
`retry`, `prover.library_path`/`prover.abi`, `metrics`, `flower`. Secrets come from the
environment when set.

Failure model: every error is one ConfigError naming the key path (or the file), raised
before any process acts on the config; a loaded config registers its URLs and secrets with
roller.redact before it is returned.

Deprecated keys still load, so that an old config keeps working, and each gets one WARNING
naming it: `retry.trace_retries` (a count of trace fetch retries) is ignored since trace
retries are bounded by time alone, `retry.trace_budget_seconds` (issue 31).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from roller.config.model import (
    DEFAULT_BROKER_URL,
    DEFAULT_HTTP_PROVER_VERSION,
    ENV_BROKER_PASSWORD,
    ENV_BROKER_URL,
    ENV_CONFIG,
    ENV_FLOWER_PASSWORD,
    ENV_KEYSTORE_PASSWORD,
    PROTOCOLS,
    PROVE_TYPES,
    RECONCILE_INTERVAL_SECONDS,
    WS_PROTOCOLS,
    CoordinatorConfig,
    FlowerConfig,
    ForkConfig,
    MetricsConfig,
    ProverConfig,
    RetryConfig,
    RollerConfig,
    SlotConfig,
)
from roller.errors import ConfigError
from roller.forks import FORKS, PRE_FORK, config_fork
from roller.logs import kv
from roller.redact import register_secret, register_url

log = logging.getLogger(__name__)


class _Reader:
    """Typed access to a JSON object that reports errors with the full key path."""

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            raise ConfigError(f"{path or '<root>'}: expected an object, got {type(obj).__name__}")
        self.obj = obj
        self.path = path

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.obj.get(key, default)
        if value is None:
            raise ConfigError(f"{self._key(key)}: required")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self._key(key)}: expected a non-empty string, got {value!r}")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.text(key) if self.obj.get(key) not in (None, "") else None

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{self._key(key)}: expected an integer >= {minimum}, got {value!r}")
        return value

    def num(self, key: str, default: float) -> float:
        value = self.obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{self._key(key)}: expected a positive number, got {value!r}")
        return float(value)

    def child(self, key: str) -> _Reader:
        return _Reader(self.obj.get(key) or {}, self._key(key))

    def only(self, known: Iterable[str]) -> _Reader:
        """Refuse keys the roller does not read: a misspelled optional key would otherwise
        be ignored in silence, its default used."""
        known = set(known)
        for key in self.obj:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{self._key(str(key))}: unknown key{hint}")
        return self

    def items(self, key: str) -> list[Any]:
        value = self.obj.get(key)
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{self._key(key)}: expected a non-empty list")
        return value


def _forks(p: _Reader, base: Path, params: Path, abi: str) -> tuple[ForkConfig, ...]:
    """`prover.forks`: the hard forks this host holds (roller.forks), each `{"name",
    "params_path"?}` (default: `prover.params_path`, where the library keeps each fork's
    circuits apart), oldest first. Absent: one fork, homestead, as every earlier release."""
    if not p.has("forks"):
        return (ForkConfig(PRE_FORK, params),)
    held: list[ForkConfig] = []
    for i, item in enumerate(p.items("forks")):
        f = _Reader(item, f"{p._key('forks')}[{i}]").only(("name", "params_path"))
        name = config_fork(f.text("name"), f._key("name"))
        if any(h.name == name for h in held):
            raise ConfigError(f"{f._key('name')}: fork {name} is held twice")
        path = _resolve(base, f.text("params_path")) if f.has("params_path") else params
        held.append(ForkConfig(name, path))
    held.sort(key=lambda h: FORKS.index(h.name))
    if abi == "seed" and [h.name for h in held] != [PRE_FORK]:
        raise ConfigError(f"{p._key('forks')}: the seed ABI proves {PRE_FORK} only")
    return tuple(held)


def _prove_type(r: _Reader, key: str) -> int:
    value = r.integer(key, 0)
    if value not in PROVE_TYPES:
        raise ConfigError(f"{r._key(key)}: expected 0 (chunk) or 1 (batch), got {value}")
    return value


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _keystore_for_gpu(keystore: Path, gpu: int) -> Path:
    return keystore.with_name(f"{keystore.stem}-gpu{gpu}{keystore.suffix or '.json'}")


def identity_suffix(k: int) -> str:
    """What identity k >= 1 of a GPU adds to its slot's name and keystore stem. Identity 0
    adds nothing, so a config that grows `identities_per_gpu` keeps its existing keys."""
    return f"-id{k}" if k else ""


def _extra_identities(slots: list[SlotConfig], per_gpu: int) -> list[SlotConfig]:
    """`identities_per_gpu`: each configured slot becomes `per_gpu` slots on the same queue
    and GPU, identity k named `<name>-id<k>` with keystore `<stem>-id<k><suffix>` (k >= 1);
    identity 0 is the slot as configured. The coordinator gives one task per identity, so
    the GPU's queue holds the next task (its traces fetched ahead) while the coordinator
    verifies the previous proof."""
    out = []
    for slot in slots:
        out.append(slot)
        for k in range(1, per_gpu):
            ks = slot.keystore_path
            out.append(SlotConfig(
                name=f"{slot.name}{identity_suffix(k)}", queue=slot.queue, gpu=slot.gpu,
                prove_type=slot.prove_type,
                keystore_path=ks.with_name(f"{ks.stem}{identity_suffix(k)}"
                                           f"{ks.suffix or '.json'}")))
    return out


def _slots(r: _Reader, base: Path, name: str, default_type: int) -> tuple[SlotConfig, ...]:
    keystore = _resolve(base, r.text("keystore_path")) if r.has("keystore_path") else None
    if r.has("slots"):
        slots = []
        for i, item in enumerate(r.items("slots")):
            s = _Reader(item, f"slots[{i}]").only(
                ("name", "queue", "gpu", "prove_type", "keystore_path"))
            gpu = s.integer("gpu", -1, minimum=-1)
            slots.append(
                SlotConfig(
                    name=s.text("name"),
                    queue=s.text("queue"),
                    gpu=None if gpu < 0 else gpu,
                    prove_type=(_prove_type(s, "prove_type") if s.has("prove_type")
                                else default_type),
                    keystore_path=_resolve(base, s.text("keystore_path")),
                )
            )
    elif r.has("gpus"):
        if keystore is None:
            raise ConfigError("keystore_path: required with gpus")
        slots = []
        for i, gpu in enumerate(r.items("gpus")):
            if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
                raise ConfigError(f"gpus[{i}]: expected a GPU index >= 0, got {gpu!r}")
            slots.append(
                SlotConfig(f"{name}-gpu{gpu}", f"gpu{gpu}", gpu, default_type,
                           _keystore_for_gpu(keystore, gpu))
            )
    else:
        if keystore is None:
            raise ConfigError("keystore_path: required (or give slots)")
        slots = [SlotConfig(name, "gpu0", 0, default_type, keystore)]
    slots = _extra_identities(slots, r.integer("identities_per_gpu", 1, minimum=1))
    seen: set[tuple[str, str]] = set()
    for slot in slots:
        for value, what in ((slot.name, "name"), (str(slot.keystore_path), "keystore_path")):
            if (what, value) in seen:
                raise ConfigError(f"slots: duplicate {what} {value!r} (one identity per slot)")
            seen.add((what, value))
    return tuple(slots)


def _with_password(url: str, password: str | None) -> str:
    if not password:
        return url
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{quote(user)}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# The seed roller's keys (spec 6.1) and ours.
ROOT_KEYS = ("roller_name", "keystore_path", "keystore_password", "coordinator_url",
             "trace_endpoint", "db_path", "prover", "broker_url", "coordinator", "slots", "gpus",
             "identities_per_gpu",
             "session_window_minutes", "retention_hours", "reconcile_interval_seconds",
             "visibility_timeout_seconds", "retry", "metrics", "flower")


def _coordinator(c: _Reader, url: str) -> CoordinatorConfig:
    c.only(("protocol", "prover_version", "hard_fork_name", "vks", "provider_type",
            "poll_interval_seconds", "refused_interval_seconds", "request_timeout_seconds",
            "failure_backoff_seconds"))
    scheme = urlsplit(url).scheme
    if scheme not in ("ws", "wss", "http", "https"):
        raise ConfigError(f"coordinator_url: expected a ws(s):// or http(s):// URL, got "
                          f"{scheme + '://...' if scheme else repr(url)}")
    ws = scheme in ("ws", "wss")
    protocol = c.text("protocol", "ws-2023-06" if ws else "auto")
    if protocol not in PROTOCOLS:
        close = difflib.get_close_matches(protocol, PROTOCOLS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"coordinator.protocol: expected one of {', '.join(PROTOCOLS)}, "
                          f"got {protocol!r}{hint}")
    if ws != (protocol in WS_PROTOCOLS):
        want = "a ws:// or wss://" if protocol in WS_PROTOCOLS else "an http:// or https://"
        raise ConfigError(f"coordinator_url: {protocol} needs {want} URL, got {scheme}://...")
    if c.has("hard_fork_name") and protocol not in ("http-h2", "auto"):
        raise ConfigError(f"coordinator.hard_fork_name: only http-h2 logins carry it, "
                          f"protocol is {protocol}")
    vks: list[str] = []
    if c.has("vks"):
        raw = c.raw("vks")
        if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
            raise ConfigError("coordinator.vks: expected a list of non-empty strings")
        vks = raw
    provider_type = c.integer("provider_type", 1, minimum=1)
    if provider_type not in (1, 2):
        raise ConfigError(f"coordinator.provider_type: expected 1 (internal) or 2 "
                          f"(external), got {provider_type}")
    return CoordinatorConfig(
        protocol=protocol,
        prover_version=c.text("prover_version", DEFAULT_HTTP_PROVER_VERSION),
        hard_fork_name=c.opt_str("hard_fork_name") or "",
        vks=tuple(vks),
        provider_type=provider_type,
        poll_interval_seconds=c.num("poll_interval_seconds", 15.0),
        refused_interval_seconds=c.num("refused_interval_seconds", 60.0),
        failure_backoff_seconds=c.num("failure_backoff_seconds", 30.0),
        request_timeout_seconds=(c.num("request_timeout_seconds", 60.0)
                                 if c.has("request_timeout_seconds") else None),
    )


def _basic_auth(r: _Reader, env: dict[str, str]) -> str | None:
    password = env.get(ENV_FLOWER_PASSWORD)
    if password:
        return f"admin:{password}"
    value = r.opt_str("basic_auth")
    if value is not None and (":" not in value or value.startswith(":") or value.endswith(":")):
        raise ConfigError("flower.basic_auth: expected user:password (both non-empty)")
    return value


def parse_config(data: Any, base: Path, env: dict[str, str] | None = None) -> RollerConfig:
    """Build a RollerConfig from decoded JSON; relative paths resolve against `base`."""
    env = dict(os.environ) if env is None else env
    r = _Reader(data, "").only(ROOT_KEYS)
    p = r.child("prover").only(("params_path", "seed_path", "prove_type", "dump_dir",
                                "library_path", "abi", "chain_id", "forks"))
    name = r.text("roller_name")
    default_type = _prove_type(p, "prove_type")
    # Only the listener (and `config check`) decrypt keystores: a worker's or Flower's
    # environment has no password, and keys.py refuses an empty one where it is needed.
    password = env.get(ENV_KEYSTORE_PASSWORD) or r.opt_str("keystore_password") or ""
    broker = env.get(ENV_BROKER_URL) or r.text("broker_url", DEFAULT_BROKER_URL)
    abi = p.text("abi", "roller")
    if abi not in ("roller", "seed"):
        raise ConfigError(f"prover.abi: expected 'roller' or 'seed', got {abi!r}")
    m = r.child("metrics").only(("bind", "listener_port", "worker_port"))
    fl = r.child("flower").only(("address", "port", "basic_auth", "db_path"))
    rt = r.child("retry").only(("max_prove_attempts", "max_task_attempts", "trace_retries",
                                "trace_budget_seconds",
                                "submit_backoff_seconds", "submit_backoff_max_seconds",
                                "reconnect_backoff_seconds", "reconnect_backoff_max_seconds"))
    url = r.text("coordinator_url")
    coordinator = _coordinator(r.child("coordinator"), url)
    window = r.num("session_window_minutes", 180.0)
    retention = r.num("retention_hours", 72.0)
    if retention * 60 < window:
        # A final record is what tells a duplicate notification from a new assignment, and
        # what a re-assignment resubmits: it must outlive the window it answered in.
        raise ConfigError(f"retention_hours: {retention:g} h is shorter than "
                          f"session_window_minutes ({window:g} min)")
    params = _resolve(base, p.text("params_path", "params"))
    forks = _forks(p, base, params, abi)
    per_assignment = rt.integer("max_prove_attempts", 3, minimum=1)
    if rt.has("trace_retries"):
        # Checked as before (an old config that loaded still loads), then ignored: a count
        # ended a fetch after seconds of an L2 outage that the budget rides out.
        rt.integer("trace_retries", 3, minimum=1)
        log.warning("deprecated config key ignored %s",
                    kv(key="retry.trace_retries",
                       reason="trace fetches retry for retry.trace_budget_seconds, not a count"))
    return RollerConfig(
        roller_name=name,
        keystore_password=password,
        coordinator_url=url,
        trace_endpoint=r.text("trace_endpoint"),
        db_path=_resolve(base, r.text("db_path", "roller.db")),
        broker_url=_with_password(broker, env.get(ENV_BROKER_PASSWORD)),
        prover=ProverConfig(
            params_path=params,
            seed_path=_resolve(base, p.text("seed_path")) if p.opt_str("seed_path") else None,
            dump_dir=_resolve(base, p.text("dump_dir")) if p.opt_str("dump_dir") else None,
            library_path=(
                _resolve(base, p.text("library_path")) if p.opt_str("library_path") else None
            ),
            abi=abi,
            chain_id=p.integer("chain_id", 0, minimum=1) if p.has("chain_id") else None,
            forks=forks,
        ),
        slots=_slots(r, base, name, default_type),
        coordinator=coordinator,
        session_window_minutes=window,
        retention_hours=retention,
        reconcile_interval_seconds=r.num("reconcile_interval_seconds",
                                         RECONCILE_INTERVAL_SECONDS),
        visibility_timeout_seconds=r.integer("visibility_timeout_seconds", 86400, minimum=60),
        retry=RetryConfig(
            max_prove_attempts=per_assignment,
            max_task_attempts=rt.integer("max_task_attempts", max(4, per_assignment),
                                         minimum=per_assignment),
            trace_budget_seconds=rt.num("trace_budget_seconds", 300.0),
            submit_backoff_seconds=rt.num("submit_backoff_seconds", 2.0),
            submit_backoff_max_seconds=rt.num("submit_backoff_max_seconds", 120.0),
            reconnect_backoff_seconds=rt.num("reconnect_backoff_seconds", 1.0),
            reconnect_backoff_max_seconds=rt.num("reconnect_backoff_max_seconds", 60.0),
        ),
        metrics=MetricsConfig(
            bind=m.text("bind", "127.0.0.1"),
            listener_port=m.integer("listener_port", 9464),
            worker_port=m.integer("worker_port", 9465),
        ),
        flower=FlowerConfig(
            address=fl.text("address", "127.0.0.1"),
            port=fl.integer("port", 5555),
            basic_auth=_basic_auth(fl, env),
            db_path=_resolve(base, fl.text("db_path", "flower.db")),
        ),
    )


_process_config: list[RollerConfig] = []


def process_config(path: str | Path | None = None) -> RollerConfig:
    """The process's one config: loaded on first use (from `path`, else $ROLLER_CONFIG) and
    shared by every module of the process after that."""
    if not _process_config:
        _process_config.append(load_config(path))
    return _process_config[0]


def load_config(path: str | Path | None = None) -> RollerConfig:
    """Load the config file at `path` (default: $ROLLER_CONFIG)."""
    path = path or os.environ.get(ENV_CONFIG)
    if not path:
        raise ConfigError(f"no config file: pass --config or set {ENV_CONFIG}")
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    cfg = parse_config(data, file.resolve().parent)
    # From here on every text this process scrubs (roller.redact) loses these secrets too.
    register_url(cfg.coordinator_url, cfg.trace_endpoint, cfg.broker_url)
    register_secret(cfg.keystore_password, os.environ.get(ENV_BROKER_PASSWORD),
                    os.environ.get(ENV_FLOWER_PASSWORD))
    if cfg.flower.basic_auth:
        register_secret(cfg.flower.basic_auth, cfg.flower.basic_auth.partition(":")[2])
    return cfg
