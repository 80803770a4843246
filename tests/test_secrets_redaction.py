"""No credential in any output: a credential in every place one can live (URL userinfo, URL
path, URL query of the coordinator, the L2 node and the broker; keystore password, broker
password, Flower password, a coordinator JWT), failures driven through each (L2 down, L2
500, coordinator refused, broker unreachable), and none of them in a log line (every level,
every logger), a metric, `roller status` output, a failure report or a `repr`.

Real components where they exist (redis-server, the in-process devnet over loopback, the
job with the mock prover); the fleet-level check of the cluster's own logs is
tests/faults/test_secrets_in_logs.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
from pathlib import Path

import pytest
from eth_account import Account
from prometheus_client import REGISTRY, generate_latest
from test_job import BLOCKS, SLOT, deliver, make_ctx, receive, submissions

from roller import redact
from roller.config import load_config, parse_config
from roller.devnet.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.errors import RollerError
from roller.ffi.mock import MockProver
from roller.operator import status
from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.http_client import HttpCoordinatorClient, Timeouts, fetch_challenge
from roller.protocol.http_enums import Generation
from roller.redact import redact_url, scrub
from roller.worker.job import JobOutcome, run_job
from roller.worker.trace_client import TraceClient

PATH_KEY = "c0ffee00" + "5ec7e7" * 5  # a hosted RPC's API key in the URL path
QUERY_KEY = "qk-5ecret-4711"
USER_PASS = "u5erpa55-0815"
KEYSTORE_PW = "keystore-pw-4242"
BROKER_PW = "broker-pw-5151"
FLOWER_PW = "flower-pw-6262"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJwdWJsaWNfa2V5IjoiMHgifQ.c2lnbmF0dXJlLXNlY3JldA"
SECRETS = (PATH_KEY, QUERY_KEY, USER_PASS, KEYSTORE_PW, BROKER_PW, FLOWER_PW, JWT,
           JWT.split(".")[2])


def with_creds(scheme: str, port: int) -> str:
    """A URL carrying a credential in userinfo, path and query."""
    return f"{scheme}://ops:{USER_PASS}@127.0.0.1:{port}/v3/{PATH_KEY}?apikey={QUERY_KEY}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} carries a secret: {text[:400]!r}"


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> None:
    # The checks below must hold without the process-wide registry (load_config fills it):
    # the crossing points scrub on their own.
    redact.forget_secrets()


@pytest.mark.unit
@pytest.mark.parametrize(("url", "shown"), [
    (f"https://ops:{USER_PASS}@rpc.example:8443/v3/{PATH_KEY}?apikey={QUERY_KEY}#x",
     "https://***@rpc.example:8443/***?***#***"),
    (f"redis://:{BROKER_PW}@10.0.0.5:6379/0", "redis://***@10.0.0.5:6379/***"),
    (f"wss://coordinator.example/ws?token={JWT}", "wss://coordinator.example/***?***"),
    ("http://127.0.0.1:5555/", "http://127.0.0.1:5555"),
    ("http://[::1]:8545", "http://[::1]:8545"),
    ("not a url", "***"),
])
def test_one_rule_for_every_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.unit
def test_foreign_error_texts_are_scrubbed() -> None:
    # requests/urllib3 write the path alone or the whole URL
    text = (f"HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
            f"/v3/{PATH_KEY}?apikey={QUERY_KEY} (Caused by NewConnectionError('refused'))")
    assert_clean("urllib3 text", scrub(text))
    assert "port=1" in scrub(text)
    text = f"500 Server Error: Internal Server Error for url: {with_creds('https', 443)}"
    assert scrub(text).endswith("for url: https://***@127.0.0.1:443/***?***")
    # a registered secret goes wherever it stands
    redact.register_url(with_creds("https", 443))
    redact.register_secret(BROKER_PW)
    assert_clean("echoed key", scrub(f"upstream says: invalid key {PATH_KEY}; pw {BROKER_PW}"))


@pytest.mark.unit
def test_no_secret_in_any_repr(tmp_path: Path) -> None:
    env = {"ROLLER_KEYSTORE_PASSWORD": KEYSTORE_PW, "ROLLER_BROKER_PASSWORD": BROKER_PW,
           "ROLLER_FLOWER_PASSWORD": FLOWER_PW}
    cfg = parse_config({
        "roller_name": "r", "keystore_path": "k.json",
        "coordinator_url": with_creds("https", 8390), "trace_endpoint": with_creds("http", 8545),
        "broker_url": f"redis://ops:{USER_PASS}@127.0.0.1:6379/0?key={QUERY_KEY}",
    }, tmp_path, env=env)
    assert cfg.flower.basic_auth == f"admin:{FLOWER_PW}" and BROKER_PW in cfg.broker_url
    text = repr(cfg)
    assert_clean("repr(RollerConfig)", text)
    assert "https://***@127.0.0.1:8390/***?***" in text  # host and port still shown
    assert_clean("repr(FlowerConfig)", repr(cfg.flower))
    client = HttpCoordinatorClient(with_creds("https", 8390), Generation.H3, Account.create(),
                                   prover_name="r", prover_version="v4.4.45-x")
    client._token = JWT  # what a login leaves behind
    assert_clean("repr(HttpCoordinatorClient)", repr(client))
    assert_clean("repr(TraceClient)", repr(TraceClient(with_creds("http", 8545))))


@pytest.fixture
def devnet() -> Devnet:
    with Devnet(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                trace_dir=DATA_DIR / "traces", chunk_tasks=False,
                dispatch_interval=0.05) as net:
        yield net


def test_no_secret_in_logs_metrics_status_or_failure_reports(
        tmp_path: Path, devnet: Devnet, redis_url: str, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    account = Account.create()
    config = {"roller_name": SLOT, "keystore_path": "k.json", "keystore_password": KEYSTORE_PW,
              "coordinator_url": devnet.ws_url,
              "trace_endpoint": with_creds("http", devnet.ports.l2),
              "broker_url": redis_url, "retry": {"submit_backoff_seconds": 0.1}}
    cfg = parse_config(config, tmp_path, env={})
    prover = MockProver()
    ctx = make_ctx(cfg, prover)
    ctx.traces = TraceClient(cfg.trace_endpoint, retries=1, backoff=0.01, timeout=2)
    reports: list[str] = []

    # L2 500 (the node's URL carries the key in userinfo, path and query)
    session, task = receive(devnet, ctx, account, BLOCKS[:1])
    devnet.set_l2_fault("http500")
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    devnet.set_l2_fault("none")
    assert deliver(ctx, account, session) == 1
    reports += [s["error"] for s in submissions(devnet, task.id)]
    session.client.close()

    # L2 down
    ctx.traces = TraceClient(with_creds("http", closed_port()), retries=1, backoff=0.01,
                             timeout=2)
    session, task = receive(devnet, ctx, account, BLOCKS[1:])
    assert run_job(ctx, SLOT, task.id) is JobOutcome.STORED
    assert deliver(ctx, account, session) == 1
    reports += [s["error"] for s in submissions(devnet, task.id)]
    session.client.close()
    assert len(reports) == 2 and all(r.startswith("[transient] get traces failed") for r in reports)
    assert prover.calls == []

    # coordinator refused / unreachable, each generation's client
    errors: list[str] = []
    for url in (with_creds("http", closed_port()), with_creds("http", devnet.ports.l2)):
        with pytest.raises(RollerError) as err:
            fetch_challenge(url, Timeouts(connect=2, read=2))
        errors.append(f"{err.value} {err.value!r}")
    ws = CoordinatorClient(with_creds("ws", closed_port()), slot=SLOT, call_timeout=2)
    with pytest.raises(RollerError) as err:
        ws.connect()
    errors.append(f"{err.value} {err.value!r}")

    # broker unreachable: `roller status` with the broker password in the URL
    broker_port = closed_port()
    config_file = tmp_path / "status.json"
    config_file.write_text(json.dumps({**config, "broker_url":
                                       f"redis://ops:{BROKER_PW}@127.0.0.1:{broker_port}/0"}))
    assert status.run(argparse.Namespace(config=str(config_file), watch=0)) == 1
    out = capsys.readouterr()
    assert f"127.0.0.1:{broker_port}" in out.err or "Redis" in out.err
    assert repr(load_config(config_file))  # and its repr

    for text in reports:
        assert_clean("failure report", text)
    for text in errors:
        assert_clean("coordinator error", text)
    assert_clean("roller status", out.out + out.err)
    assert_clean("metrics", generate_latest(REGISTRY).decode())
    # The roller's own lines are clean at the source; a library's (urllib3, websocket,
    # celery) pass the RedactingFilter every handler of a roller process carries. The
    # devnet's lines are the coordinator's and the L2 node's side: not checked.
    checked = 0
    for record in caplog.records:
        if record.name.startswith(("roller.devnet", "websockets.")):
            continue
        if not record.name.startswith("roller."):
            redact.RedactingFilter().filter(record)
        checked += 1
        assert_clean(f"log line of {record.name}", record.getMessage() + (record.exc_text or ""))
    assert checked > 5
