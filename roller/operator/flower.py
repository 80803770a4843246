"""`roller flower`: Flower (`celery -A roller flower`) set up from the roller config.

Each job is listed as `roller.prove` with its arguments (slot, coordinator task id, chunk,
batch or bundle with the coordinator generation, e.g. `chunk http-h3`, blocks or
sub-proofs), its runtime and its outcome. Basic auth is required
unless `--no-auth` (devnet), which is logged loudly; the credentials travel in the
environment (FLOWER_BASIC_AUTH), not on the command line where `ps` would show them.
State persists across Flower restarts (`--persistent`, `flower.db_path`). Flower loads the
same celeryconfig as every other client, so its visibility timeout matches theirs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from roller.config import ENV_CONFIG, ENV_FLOWER_PASSWORD, RollerConfig, load_config
from roller.errors import RollerError
from roller.logs import kv, setup_logging

log = logging.getLogger("roller.operator.flower")

# Flower's default runtime buckets stop at 10 s; proofs take minutes to hours.
RUNTIME_BUCKETS = "10,60,300,600,1800,3600,7200,14400,28800,inf"
STATE_SAVE_INTERVAL_MS = 60_000
# Flower hides job arguments by default; they are what an operator knows a job by.
TASKS_COLUMNS = "name,args,state,result,runtime,received,routing_key,worker,uuid"


def flower_argv(cfg: RollerConfig) -> list[str]:
    celery = Path(sys.executable).with_name("celery")
    return [str(celery), "-A", "roller", "flower",
            f"--address={cfg.flower.address}", f"--port={cfg.flower.port}",
            "--persistent=True", f"--db={cfg.flower.db_path}",
            f"--state_save_interval={STATE_SAVE_INTERVAL_MS}",
            f"--task_runtime_metric_buckets={RUNTIME_BUCKETS}",
            f"--tasks_columns={TASKS_COLUMNS}"]


def flower_env(cfg: RollerConfig, config_path: Path, no_auth: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWER_BASIC_AUTH", "FLOWER_UNAUTHENTICATED_API")}
    env[ENV_CONFIG] = str(config_path.resolve())
    if not no_auth:
        assert cfg.flower.basic_auth
        env["FLOWER_BASIC_AUTH"] = cfg.flower.basic_auth
    return env


def run(args: argparse.Namespace) -> int:
    setup_logging(None)
    path = args.config or os.environ.get(ENV_CONFIG)
    try:
        cfg = load_config(path)
    except RollerError as exc:
        log.error("cannot start Flower %s", kv(error=exc))
        return 2
    assert path is not None
    if args.no_auth:
        log.warning("FLOWER RUNS WITHOUT AUTHENTICATION (--no-auth, devnet only): anyone who "
                    "reaches it sees every job and can control the workers %s",
                    kv(address=cfg.flower.address, port=cfg.flower.port))
    elif not cfg.flower.basic_auth or ":" not in cfg.flower.basic_auth:
        log.error("refusing to start Flower without authentication: set flower.basic_auth "
                  "(user:password) in the config or %s, or pass --no-auth on a devnet",
                  ENV_FLOWER_PASSWORD)
        return 2
    cfg.flower.db_path.parent.mkdir(parents=True, exist_ok=True)
    argv = flower_argv(cfg)
    log.info("starting Flower %s", kv(url=f"http://{cfg.flower.address}:{cfg.flower.port}/",
                                      db=cfg.flower.db_path, auth=not args.no_auth))
    env = flower_env(cfg, Path(path), args.no_auth)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: Flower gets the signals directly (SIGTERM saves its state), as under systemd.
    os.execve(argv[0], argv, env)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="roller config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--no-auth", action="store_true",
                        help="run without basic auth (devnet only; logged as a warning)")
