"""`roller devnet` / `python -m roller.devnet`: run the local coordinator + L2 node."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roller.devnet.traces import DATA_DIR, DEFAULT_TRACE_DIR
from roller.devnet.verifier import VERIFIER_CHOICES
from roller.errors import RollerError

DESCRIPTION = """\
Run a local Scroll-style devnet on loopback: a coordinator (WebSocket JSON-RPC,
2023-06 roller protocol, or 2023-07 with --protocol ws-2023-07: roller_requestToken,
roller_subscribe "register", roller_submitProof, with the real coordinator's checks and
error texts), an L2 node
(HTTP JSON-RPC scroll_getBlockTraceByNumberOrHash serving a trace directory), and a
control API (HTTP JSON) for scripted tests: ledger, metrics, push task, drop
connections, restart, outage, slow verification, L2 faults.

Tasks: the served traces are split into contiguous chains and cut into chunk tasks
(type 0, basic; 1 in ws-2023-07) of --chunk-size blocks; with --batch, once every chunk of
a chain is verified, one batch task (type 1, aggregator; 2 in ws-2023-07) carrying the
chunk proofs is created.
"""

EPILOG = f"""\
Any port may be 0 to bind a free one; the bound ports are printed on stdout as
`devnet ready ws_url=... l2_url=... control_url=...` (coordinator_url=... with --protocol
http-*) and written to --ready-file.
Shipped trace sets: {DATA_DIR}/chain-534352 (default, 49 mainnet blocks)
and {DATA_DIR}/traces (format variants; colliding hashes are served once).
Control API: GET /ledger, /metrics, /metrics.json, /health; POST /push_task,
/dispatch_now, /drop_connections, /restart, /stop_for, /submit_delay,
/collection_time, /l2_fault (see roller/devnet/control.py). Task types in the control API
and the ledger are 0 (chunk) and 1 (batch) whatever the protocol's wire numbers.
"""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    net = p.add_argument_group("network (loopback only)")
    net.add_argument("--host", default="127.0.0.1",
                     help="address every server binds to (default: %(default)s)")
    net.add_argument("--ws-port", type=int, default=8391,
                     help="coordinator WebSocket port, any path (default: %(default)s)")
    net.add_argument("--protocol", default="ws",
                     choices=("ws", "ws-2023-06", "ws-2023-07", "http-h1", "http-h2", "http-h3",
                              "http-h4"),
                     help="coordinator protocol: the 2023-06 WS one (default; `ws` and "
                     "`ws-2023-06` are the same), the 2023-07 WS variant (no timestamp in the "
                     "identity, proof types 1 = chunk and 2 = batch; spec section 8) or an "
                     "HTTP+JWT generation (shared/spec/coordinator-http-protocol.md)")
    net.add_argument("--http-port", type=int, default=8390,
                     help="HTTP coordinator port for --protocol http-* (default 8390)")
    net.add_argument("--l2-port", type=int, default=8545,
                     help="L2 node HTTP JSON-RPC port (default: %(default)s)")
    net.add_argument("--control-port", type=int, default=8392,
                     help="control API HTTP port (default: %(default)s)")
    net.add_argument("--ping-idle", type=float, default=60.0, metavar="SECONDS",
                     help="coordinator pings a connection after this long without a server "
                          "write, then drops it if no pong within 30 s (default: %(default)s)")
    net.add_argument("--compression-level", type=int, default=9, choices=range(-2, 10),
                     metavar="{-2..9}",
                     help="permessage-deflate level offered to clients that ask; 0 turns "
                          "compression off (default: %(default)s)")

    tasks = p.add_argument_group("tasks")
    tasks.add_argument("--trace-dir", type=Path, default=DEFAULT_TRACE_DIR,
                       help="directory of block traces (*.json or *.json.gz, searched "
                            "recursively) served by the L2 node and cut into chunk tasks "
                            "(default: the shipped chain-534352 set)")
    tasks.add_argument("--chunk-size", type=int, default=10, metavar="BLOCKS",
                       help="consecutive blocks per chunk task (default: %(default)s)")
    tasks.add_argument("--no-chunk-tasks", dest="chunk_tasks", action="store_false",
                       help="create no chunk tasks from the traces; only tasks pushed "
                            "through the control API are dispatched")
    tasks.add_argument("--batch", action="store_true",
                       help="when every chunk task of a chain is verified, create one batch "
                            "task (type 1) whose sub_proofs are the chunk proofs in order")

    tasks.add_argument("--chain-config", type=Path, default=None, metavar="FILE",
                       help="the chain's hard forks, as l2geth's chain config names them "
                            "(JSON: bernoulliBlock, curieBlock, darwinTime, darwinV2Time; or "
                            "a genesis with them under 'config'): each task carries the fork "
                            "of its first block, no chunk or batch spans a boundary "
                            "(default: darwinV2 from block 0 for http-h3/h4, else homestead)")

    coord = p.add_argument_group("coordinator (spec section 5.1)")
    coord.add_argument("--token-ttl", type=float, default=60.0, metavar="SECONDS",
                       help="token_time_to_live: a token is valid this long from creation "
                            "and returned again while valid (default: %(default)s)")
    coord.add_argument("--challenge-ttl", type=float, default=10.0, metavar="SECONDS",
                       help="HTTP: challenge JWT lifetime (default 10)")
    coord.add_argument("--login-ttl", type=float, default=3600.0, metavar="SECONDS",
                       help="HTTP: login JWT lifetime (default 3600)")
    coord.add_argument("--min-prover-version", default=None, metavar="VERSION",
                       help="http-h3: the version prefix a login must carry (v4.4.47+ rule)")
    coord.add_argument("--collection-time", type=float, default=180 * 60.0, metavar="SECONDS",
                       help="session timeout, re-armed after every result; the real config "
                            "gives minutes, the devnet takes seconds (default: %(default)s "
                            "= 180 min)")
    coord.add_argument("--session-attempts", type=int, default=2, metavar="N",
                       help="dispatch attempts per task before it fails; 0 means 2 "
                            "(default: %(default)s)")
    coord.add_argument("--rollers-per-session", type=int, default=1, metavar="N",
                       help="rollers given the same task (default: %(default)s)")
    coord.add_argument("--dispatch-interval", type=float, default=2.0, metavar="SECONDS",
                       help="period of the dispatch loop (default: %(default)s)")
    coord.add_argument("--verify-delay", type=float, default=0.0, metavar="SECONDS",
                       help="wait before each proof verification, WS and HTTP (a real "
                            "verifier takes seconds; POST /submit_delay changes it) "
                            "(default: %(default)s)")
    coord.add_argument("--verifier", choices=VERIFIER_CHOICES, default="auto",
                       help="proof verifier: native = the prover library (roller.ffi); "
                            "stand-in = fake check (rejects `this is a invalid proof` and "
                            "empty or non-32-multiple proof/final_pair); auto = native when "
                            "--params-dir is given and the library loads, else stand-in "
                            "(default: %(default)s)")
    coord.add_argument("--params-dir", type=Path, default=None,
                       help="KZG params directory of the native verifier (required for "
                            "--verifier native; library from $ROLLER_PROVER_LIB or the "
                            "default build path)")
    coord.add_argument("--max-verifier-workers", type=int, default=10, metavar="N",
                       help="concurrent proof verifications (default: %(default)s)")
    coord.add_argument("--seed", type=int, default=None,
                       help="seed of the random roller choice (default: unseeded)")

    out = p.add_argument_group("output")
    out.add_argument("--ready-file", type=Path, default=None,
                     help="write {protocol, coordinator_url, ws_url (WS only), l2_url, "
                          "control_url, ports, pid} as JSON here once every server listens")
    out.add_argument("--log-level", default="INFO",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     help="log level; logs are key=value lines on stderr (default: "
                          "%(default)s)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `devnet` subcommand to the `roller` command."""
    p = subparsers.add_parser(
        "devnet", help="run a local coordinator + L2 trace node for rehearsals and tests",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m roller.devnet", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Start the devnet and serve until SIGINT/SIGTERM."""
    from roller.devnet.chainforks import ChainForks
    from roller.devnet.devnet import Devnet, DevnetConfig
    from roller.logs import setup_logging

    setup_logging(args.log_level)
    if args.log_level != "DEBUG":
        # websockets logs every connection open/close at INFO.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        chain_forks = (ChainForks.from_file(args.chain_config) if args.chain_config
                       else None)
    except RollerError as exc:
        print(f"devnet error: {exc}", file=sys.stderr)
        return 1
    config = DevnetConfig(
        host=args.host, ws_port=args.ws_port, l2_port=args.l2_port,
        control_port=args.control_port, trace_dir=args.trace_dir, chunk_size=args.chunk_size,
        chunk_tasks=args.chunk_tasks, batch=args.batch, token_ttl=args.token_ttl,
        collection_time=args.collection_time, session_attempts=args.session_attempts,
        rollers_per_session=args.rollers_per_session,
        dispatch_interval=args.dispatch_interval, verifier=args.verifier,
        params_dir=args.params_dir, ping_idle=args.ping_idle,
        compression_level=args.compression_level,
        max_verifier_workers=args.max_verifier_workers, seed=args.seed,
        protocol=args.protocol, http_port=args.http_port, challenge_ttl=args.challenge_ttl,
        login_ttl=args.login_ttl, min_prover_version=args.min_prover_version,
        verify_delay=args.verify_delay, chain_forks=chain_forks,
    )
    try:
        devnet = Devnet(config)
        ports = devnet.start()
    except (RollerError, OSError, ValueError) as exc:
        print(f"devnet error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    info: dict[str, Any] = {
        "protocol": args.protocol, "coordinator_url": devnet.coordinator_url,
        "l2_url": devnet.l2_url, "control_url": devnet.control_url,
        "ports": {"l2": ports.l2, "control": ports.control},
        "pid": os.getpid(), "verifier": devnet.verifier.name,
        # The forks its tasks name, in chain order (what a roller must hold to prove them).
        "forks": list(devnet.chain_fork_names()),
    }
    if devnet.http is None:
        info["ws_url"] = devnet.ws_url
        info["ports"]["ws"] = ports.ws
    else:
        info["ports"]["http"] = ports.http
    if args.ready_file:
        tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(args.ready_file)
    first = (f"ws_url={devnet.ws_url}" if devnet.http is None
             else f"coordinator_url={devnet.coordinator_url} protocol={args.protocol}")
    print(f"devnet ready {first} l2_url={devnet.l2_url} control_url={devnet.control_url} "
          f"verifier={devnet.verifier.name}", flush=True)
    try:
        stop.wait()
    finally:
        devnet.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
