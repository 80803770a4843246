"""The workers' scrape endpoint: prometheus_client multiprocess mode, one endpoint per host.

Jobs run in prefork pool children, each with its own memory, so worker metrics use
prometheus_client's multiprocess mode: every process writes its values to mmap files in
one directory and the endpoint merges them when scraped.

- `celeryd_init` (worker parent, before the pool forks): pick the directory (the operator's
  PROMETHEUS_MULTIPROC_DIR, else `metrics/` beside the config's `db_path`), export it to the
  children, switch prometheus_client to multiprocess values.
- `worker_ready` (parent, logging set up): start the endpoint thread.
- One endpoint per host: all workers of a host share the directory and try to bind
  `metrics.worker_port`; the first one serves them all, the others retry every
  BIND_RETRY_SECONDS, so the endpoint moves to another worker when its holder stops.
  With port 0 (tests) every worker binds its own ephemeral port and logs it.
- Dead processes: a child marks itself dead on a clean exit (`worker_process_shutdown`);
  each scrape also drops the live gauges of processes that no longer exist (SIGKILL, OOM),
  so a crashed proof does not leave its slot shown as busy.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import prometheus_client.values
from celery import signals
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from roller.config import MetricsConfig, process_config
from roller.errors import RollerError
from roller.logs import kv

log = logging.getLogger(__name__)

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
BIND_RETRY_SECONDS = 15.0

_server: Any = None  # the endpoint's WSGI server, in the worker that holds the port
_metrics_cfg: MetricsConfig | None = None  # set by celeryd_init when metrics are on


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_dead_processes(path: Path) -> None:
    """Forget the live gauges of processes that died without a clean exit."""
    for file in path.glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), str(path))


class HostCollector(Collector):
    """Merges the metric files of every worker process on this host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inner = MultiProcessCollector(None, str(path))

    def collect(self) -> Iterable[Any]:
        drop_dead_processes(self.path)
        return self.inner.collect()


def _bind(cfg: MetricsConfig, registry: CollectorRegistry) -> None:
    """Bind the host endpoint, or wait for the worker holding it to go away."""
    global _server
    waiting = False
    while True:
        try:
            _server, _thread = start_http_server(cfg.worker_port, cfg.bind, registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                log.error("worker metrics endpoint not started %s",
                          kv(bind=cfg.bind, port=cfg.worker_port, error=exc))
                return
            if not waiting:
                log.info("worker metrics endpoint served by another worker on this host %s",
                         kv(port=cfg.worker_port))
                waiting = True
            time.sleep(BIND_RETRY_SECONDS)
            continue
        log.info("metrics endpoint listening %s",
                 kv(what="workers", url=f"http://{cfg.bind}:{_server.server_port}/",
                    pid=os.getpid()))
        return


def multiproc_dir(db_path: Path) -> Path:
    return Path(os.environ.get(ENV_DIR) or db_path.parent / "metrics")


@signals.celeryd_init.connect
def setup_worker_metrics(**_: Any) -> None:
    try:
        cfg = process_config()
    except RollerError:
        return  # the worker's start check (roller.tasks) reports it and exits
    path = multiproc_dir(cfg.db_path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_DIR] = str(path)
    # Celery imported the task modules (and prometheus_client) before this signal: switch
    # the value store now, before any labelled metric creates its first value.
    prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()
    global _metrics_cfg
    _metrics_cfg = cfg.metrics


@signals.worker_ready.connect
def start_endpoint(**_: Any) -> None:
    if _metrics_cfg is None:
        return
    registry = CollectorRegistry()
    registry.register(HostCollector(Path(os.environ[ENV_DIR])))
    threading.Thread(target=_bind, args=(_metrics_cfg, registry), daemon=True,
                     name="metrics-bind").start()


@signals.worker_process_init.connect
def _close_inherited_endpoint(**_: Any) -> None:
    """A forked child must not keep the parent's listening socket open after the parent."""
    if _server is not None:
        _server.socket.close()


@signals.worker_process_shutdown.connect
def _mark_dead(**_: Any) -> None:
    if os.environ.get(ENV_DIR):
        mark_process_dead(os.getpid(), os.environ[ENV_DIR])
