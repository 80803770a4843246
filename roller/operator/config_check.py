"""`roller config check`: every check the processes run at start, run before they start.

A config that passes here starts: the same reader (unknown keys refused, every error naming
its key path), the keystores as the listener opens them (mode, type, format, decryption
with the configured password), Flower's credentials, the prover library as a worker loads
it, and whether the keys on disk still match the slots (a renamed slot or a switch to the
`gpus` shorthand would otherwise create a new identity in silence). With `--connect` it
also asks the broker, the coordinator and the L2 node whether they answer: on an HTTP
coordinator (configured or detected generation) every slot whose keystore exists logs in
with its own key as the listener will, so a wrong generation, `prover_version` or `vks`
fails here with the coordinator's own message instead of at the listener's first login; the
L2 node must answer `eth_blockNumber`, which polling sends as `prover_height`. A login spends
one challenge and issues a token, nothing else (no task is asked for).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from roller.config import RollerConfig, load_config, proof_kind
from roller.errors import RollerError
from roller.keys import orphan_keystores


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'error'}: {self.what}: {self.detail}"


def _keystores(cfg: RollerConfig) -> list[Finding]:
    from roller.keys import load_keystore

    out = []
    for slot in cfg.slots:
        what = f"slots {slot.name} keystore"
        if not slot.keystore_path.exists():
            out.append(Finding(True, what, f"{slot.keystore_path} absent: a new key is "
                                           "created at first start"))
            continue
        try:
            account = load_keystore(slot.keystore_path, cfg.keystore_password)
        except RollerError as exc:
            out.append(Finding(False, what, str(exc)))
        else:
            out.append(Finding(True, what, f"{slot.keystore_path} address={account.address}"))
    for name, path, others in orphan_keystores(cfg):
        listed = ", ".join(str(p) for p in others)
        out.append(Finding(False, f"slots {name} identity",
                           f"{path} does not exist and would get a NEW key, while {listed} "
                           "belongs to no slot: did the slot's name, the gpus list or "
                           "keystore_path change? Rename the file to keep the identity"))
    return out


def _flower(cfg: RollerConfig) -> Finding:
    if cfg.flower.basic_auth:
        user = cfg.flower.basic_auth.split(":", 1)[0]
        return Finding(True, "flower", f"basic auth for user {user!r}")
    return Finding(True, "flower", "no basic_auth: `roller flower` refuses to start "
                                   "(set flower.basic_auth or $ROLLER_FLOWER_PASSWORD)")


def _prover(cfg: RollerConfig) -> Finding:
    from roller.ffi import load_configured_prover

    library = cfg.prover.library_path
    try:
        load_configured_prover(cfg.prover)
    except (RollerError, OSError) as exc:
        return Finding(False, "prover library", str(exc))
    return Finding(True, "prover library", f"{library or 'the built library'} loads "
                                           f"(abi={cfg.prover.abi})")


def _connect(cfg: RollerConfig) -> list[Finding]:
    import redis
    import requests

    from roller.redact import describe, redact_url

    out = []
    try:
        redis.Redis.from_url(cfg.broker_url, socket_timeout=5, socket_connect_timeout=5).ping()
        out.append(Finding(True, "broker", "answers"))
    except redis.RedisError as exc:
        out.append(Finding(False, "broker", f"does not answer: {describe(exc)}"))
    out.append(_coordinator(cfg))
    if out[-1].ok and cfg.coordinator.http:
        out.extend(_logins(cfg))
    for method in ("eth_chainId", "eth_blockNumber"):
        try:
            resp = requests.post(cfg.trace_endpoint, timeout=5, json={
                "jsonrpc": "2.0", "id": 1, "method": method, "params": []})
            answer = resp.json()
            # Polling needs the head; the chain id is informational (a devnet node lacks it).
            if method == "eth_blockNumber" and (not isinstance(answer, dict)
                                                or "result" not in answer):
                raise ValueError(f"no result: {str(answer)[:200]}")
            result = answer.get("result", "an error") if isinstance(answer, dict) else "?"
            out.append(Finding(True, "L2 node", f"{redact_url(cfg.trace_endpoint)} answers "
                                                f"{method}: {result}"))
        except (requests.RequestException, ValueError) as exc:
            out.append(Finding(False, "L2 node", f"does not answer JSON-RPC {method} at "
                                                 f"{redact_url(cfg.trace_endpoint)}: "
                                                 f"{describe(exc)}"))
    return out


def _logins(cfg: RollerConfig) -> list[Finding]:
    """Each slot's login in the configured (or detected) generation; a refusal is reported
    with the coordinator's own message."""
    from roller.coordinator_session import SessionFactory
    from roller.errors import CoordinatorError
    from roller.keys import load_keystore
    from roller.protocol.session import HttpCoordinatorSession

    factory = SessionFactory(cfg)
    out = []
    for slot in cfg.slots:
        what = f"slots {slot.name} login"
        if not slot.keystore_path.exists():
            out.append(Finding(True, what, "skipped: no key yet (created at first start)"))
            continue
        try:
            account = load_keystore(slot.keystore_path, cfg.keystore_password)
            session = factory.new(slot, account)
            inner = getattr(session, "inner", session)
            if not isinstance(inner, HttpCoordinatorSession):
                out.append(Finding(True, what, f"{session.generation}: no HTTP login"))
                continue
            inner.client.login()
            out.append(Finding(True, what, f"{inner.generation} login accepted "
                                           f"pk={inner.client.public_key[:10]}..."))
        except CoordinatorError as exc:
            out.append(Finding(False, what, f"coordinator refused the login: {exc.message}"))
        except RollerError as exc:
            out.append(Finding(False, what, str(exc)))
    return out


def _coordinator(cfg: RollerConfig) -> Finding:
    """A WS coordinator must accept a WebSocket; an HTTP one must hand out a login challenge
    (which spends nothing: a challenge row is only used by a login)."""
    from roller.protocol.coordinator_client import CoordinatorClient
    from roller.protocol.http_client import Timeouts, fetch_challenge
    from roller.redact import redact_url

    where = f"{redact_url(cfg.coordinator_url)} ({cfg.coordinator.protocol})"
    if cfg.coordinator.http:
        try:
            fetch_challenge(cfg.coordinator_url, Timeouts(connect=5, read=5))
            return Finding(True, "coordinator", f"{where} hands out a login challenge")
        except RollerError as exc:
            return Finding(False, "coordinator", f"{where}: {exc}")
    client = CoordinatorClient(cfg.coordinator_url, slot="config-check", call_timeout=5)
    try:
        client.connect()
        return Finding(True, "coordinator", f"{where} accepts a WebSocket")
    except RollerError as exc:
        return Finding(False, "coordinator", str(exc))
    finally:
        client.close()


def findings(cfg: RollerConfig, connect: bool = False) -> list[Finding]:
    checks: list[Callable[[], list[Finding]]] = [
        lambda: _keystores(cfg), lambda: [_flower(cfg)], lambda: [_prover(cfg)]]
    if connect:
        checks.append(lambda: _connect(cfg))
    return [f for check in checks for f in check()]


def run(args: argparse.Namespace) -> int:
    path = args.config_option or args.config
    try:
        cfg = load_config(path)
    except RollerError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    print(f"config {path or '$ROLLER_CONFIG'}: {len(cfg.slots)} slot(s)")
    for slot in cfg.slots:
        print(f"  {slot.name}: queue={slot.queue} gpu={slot.gpu} "
              f"type={proof_kind(slot.prove_type)} keystore={slot.keystore_path}")
    results = findings(cfg, connect=args.connect)
    for finding in results:
        print(finding.line(), file=sys.stdout if finding.ok else sys.stderr)
    failed = sum(not f.ok for f in results)
    print(f"{'ok' if not failed else f'{failed} problem(s)'}")
    return 1 if failed else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="config file (default: $ROLLER_CONFIG)")
    parser.add_argument("--config", dest="config_option", metavar="FILE",
                        help="the same, as the other commands take it")
    parser.add_argument("--connect", action="store_true",
                        help="also check that the broker, the coordinator and the L2 node "
                             "answer")
