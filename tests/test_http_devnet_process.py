"""`roller devnet --protocol http-h2` as a real process: the ready file names the HTTP
coordinator, and a client logs in, gets a task and submits over loopback."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests
from devnet_helpers import start_devnet_process
from eth_account import Account

from roller.protocol.http_client import HttpCoordinatorClient
from roller.protocol.http_messages import SubmitProofRequest


@pytest.mark.e2e
def test_process_http_generation(tmp_path: Path) -> None:
    proc, info = start_devnet_process(tmp_path, "--protocol", "http-h2", "--http-port", "0")
    try:
        assert info["protocol"] == "http-h2" and info["ports"]["http"] > 0
        client = HttpCoordinatorClient(info["coordinator_url"], "http-h2", Account.create(),
                                       prover_name="proc", prover_version="v4.4.23-x",
                                       hard_fork_name="curie")
        task = client.get_task((1,), 10**9)
        assert task is not None and task.uuid
        client.submit_proof(SubmitProofRequest.success(task, "{}"))
        ledger = requests.get(info["control_url"] + "ledger", timeout=5).json()
        assert any(t["id"] == task.task_id and t["state"] == "verified"
                   for t in ledger["tasks"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=20)
    assert proc.returncode == 0, errs
    assert "coordinator_url=http://127.0.0.1:" in out and "protocol=http-h2" in out
