"""The `roller` command: one entry point for operators' tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _listener(args: argparse.Namespace) -> int:
    from roller.listener import main

    return main(["--config", args.config] if args.config else [])


def build_parser() -> argparse.ArgumentParser:
    from roller import demo as demo_mod
    from roller.devnet.cli import add_parser as add_devnet
    from roller.operator import config_check
    from roller.operator import flower as flower_mod
    from roller.operator import status as status_mod

    parser = argparse.ArgumentParser(
        prog="roller",
        description="Prover client for Scroll-style zk rollups. Production processes: "
                    "`python -m roller.listener --config config.json` and one "
                    "`celery -A roller worker -Q gpuN` per GPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = sub.add_parser("config", help="validate a roller config file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="run every check the processes run at start",
                                  description=config_check.__doc__)
    config_check.add_arguments(check)
    check.set_defaults(func=config_check.run)

    listener = sub.add_parser("listener",
                              help="run the listener (same as python -m roller.listener)")
    listener.add_argument("--config", help="config file (default: $ROLLER_CONFIG)")
    listener.set_defaults(func=_listener)

    demo = sub.add_parser("demo", help="run a local devnet proving real traces end to end",
                          description=demo_mod.DESCRIPTION)
    demo_mod.add_arguments(demo)
    demo.set_defaults(func=demo_mod.run)

    status = sub.add_parser("status", help="one table per slot from the Redis ledger: session, "
                                           "current task, last proof, outbox backlog")
    status_mod.add_arguments(status)
    status.set_defaults(func=status_mod.run)

    flower = sub.add_parser("flower", help="run Flower (celery -A roller flower) from the "
                                           "roller config, with basic auth and persistence",
                            description=flower_mod.__doc__)
    flower_mod.add_arguments(flower)
    flower.set_defaults(func=flower_mod.run)

    add_devnet(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
