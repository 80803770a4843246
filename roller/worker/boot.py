"""A worker's start, in its parent process, before any pool child or job exists.

`celeryd_init` runs once, before the worker connects to the broker: it reads the config,
pins the worker to its GPU, refuses queues that serve no slot, and checks in a throwaway
child process that the prover library loads and initialises for the slots' prove types
(building the circuit cache on a first start, so no job waits for it). Any failure ends the
worker with one line on stderr and status 3, so the process manager shows it and no task is
swallowed by a worker that cannot prove.

GPU pinning: a worker drives the GPU its slots name (`slots[].gpu`, or the `gpus`
shorthand), whatever its queues are called; without one, a queue named `gpuK` means GPU K.
Pool children inherit `CUDA_VISIBLE_DEVICES`, so the prover (loaded lazily in the child)
never sees another GPU. Queues whose slots name different GPUs are refused. Where NVML is
present (roller.worker.gpu_guard), a GPU it does not enumerate is refused the same way, and the
worker watches and fences its GPU while it runs.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from typing import Any, NoReturn

from celery import signals

from roller import redact
from roller.config import ENV_CONFIG, RollerConfig, process_config
from roller.errors import RollerError
from roller.logs import kv, log_level
from roller.worker import gpu_guard
from roller.worker.prover import QUEUES_ENV, prove_types

log = logging.getLogger(__name__)

EXIT_WORKER_FAULT = 3
PREFLIGHT_TIMEOUT_SECONDS = 900
GPU_QUEUE = re.compile(r"^gpu(\d+)$")


def fatal(message: str) -> NoReturn:
    # Before Celery sets up logging: one plain line on stderr, where the process manager
    # (systemd's journal, supervisor's log) shows it.
    print(f"roller worker: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_WORKER_FAULT)


def gpu_of_queues(queues: list[str]) -> str | None:
    gpus = [m.group(1) for m in (GPU_QUEUE.match(q.strip()) for q in queues) if m]
    return gpus[0] if len(gpus) == 1 else None


def gpu_for(cfg: RollerConfig, queues: list[str]) -> str | None:
    """The GPU a worker consuming `queues` drives (see the module docstring)."""
    gpus = sorted({s.gpu for s in cfg.slots if s.queue in queues and s.gpu is not None})
    if len(gpus) > 1:
        raise RollerError(f"queues {sorted(queues)} serve slots on GPUs {gpus}: one worker "
                          "drives one GPU")
    return str(gpus[0]) if gpus else gpu_of_queues(queues)


def _queues(options: Any) -> list[str]:
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    return [q.strip() for q in queues if q.strip()]


@signals.after_setup_task_logger.connect
def _redact_task_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    redact.install(logger)


@signals.after_setup_logger.connect
def _roller_logs_at_info(logger: logging.Logger | None = None, **_: Any) -> None:
    """The roller's INFO lines (job received, proof stored) whatever Celery's --loglevel
    (Celery's default is WARNING): an operator greps them. $ROLLER_LOG_LEVEL changes it;
    Celery's own lines stay at the level asked for. Every line passes roller.redact."""
    redact.install(logger)
    try:
        logging.getLogger("roller").setLevel(log_level(None))
    except RollerError as exc:
        fatal(str(exc))


@signals.celeryd_init.connect
def boot(options: Any = None, **_: Any) -> None:
    queues = _queues(options)
    os.environ[QUEUES_ENV] = ",".join(queues)
    if not os.environ.get(ENV_CONFIG):
        fatal(f"no config: set {ENV_CONFIG}=/path/to/config.json")
    try:
        cfg = process_config()
        gpu = gpu_for(cfg, queues)
    except RollerError as exc:
        fatal(f"config: {exc}")
    known = {s.queue for s in cfg.slots}
    if queues and not set(queues) & known:
        fatal(f"queues {sorted(queues)} serve no slot of the config (slots use "
              f"{sorted(known)})")
    if gpu is not None:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", gpu)
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        gpu_guard.check(os.environ.get("CUDA_VISIBLE_DEVICES"))
    except RollerError as exc:
        fatal(f"GPU: {exc}")
    _check_prover(cfg, set(queues) or known)


def _check_prover(cfg: RollerConfig, queues: set[str]) -> None:
    types = prove_types(cfg, queues)
    log.info("checking the prover %s", kv(library=cfg.prover.library_path or "default",
                                          abi=cfg.prover.abi, types=types))
    argv = [sys.executable, "-c",
            f"from roller.worker.prover import preflight; preflight({types!r})"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=PREFLIGHT_TIMEOUT_SECONDS, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        fatal(f"prover check did not finish within {PREFLIGHT_TIMEOUT_SECONDS} s")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        fatal(f"prover unusable: {lines[-1] if lines else f'exit {done.returncode}'}")
