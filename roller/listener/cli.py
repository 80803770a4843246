"""`python -m roller.listener`: the listener's command line (its arguments, start-up checks,
signals and exit codes: 0 after a stop by SIGTERM or SIGINT, 2 for a start-up error).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from roller.config import process_config
from roller.errors import RollerError
from roller.keys import orphan_keystores
from roller.listener.process import Listener
from roller.logs import kv, setup_logging
from roller.observe import metrics

# Every part of the listener logs as `roller.listener`: the name its lines always had.
log = logging.getLogger("roller.listener")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m roller.listener",
        description="Keep one coordinator session per slot and turn every task into a Celery "
                    "job on the slot's queue (gpuN). It never proves: run one "
                    "`celery -A roller worker -Q gpuN` per GPU for that.")
    parser.add_argument("--config", help="roller config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    args = parser.parse_args(argv)
    try:
        setup_logging(args.log_level)
    except RollerError as exc:
        print(f"roller listener: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = process_config(args.config)
        for name, path, others in orphan_keystores(cfg):
            log.warning("slot has no key and gets a new identity while other keystores "
                        "belong to no slot %s", kv(slot=name, keystore=path,
                                                   unclaimed=",".join(map(str, others))))
        from roller.celery_app import configure

        listener = Listener(cfg, configure(cfg))
        listener.first_key()
        metrics.serve_listener(cfg.metrics, listener.ledger, cfg.slots)
    except RollerError as exc:
        log.error("cannot start %s", kv(error=exc))
        return 2
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping %s", kv(signal=signal.Signals(signum).name))
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    listener.start()
    log.info("listener started %s", kv(slots=",".join(s.name for s in cfg.slots)))
    while not done.wait(0.2):
        if listener.key_error is not None:
            # A keystore that cannot be opened (wrong password, bad file) is a start-up
            # error, found while the other slots already run: stop them all.
            log.error("cannot start %s", kv(error=listener.key_error))
            listener.stop()
            return 2
    listener.stop()
    return 0
