"""The devnet as a separate process (`python -m roller.devnet`), driven over real WebSocket."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from devnet_helpers import proof_msg, start_devnet_process
from eth_account import Account

from roller.protocol.coordinator_client import CoordinatorClient
from roller.protocol.messages import TaskMsg
from roller.worker.trace_client import TraceClient

pytestmark = pytest.mark.integration


@pytest.mark.e2e
def test_process_token_register_task_submit(tmp_path: Path) -> None:
    proc, info = start_devnet_process(tmp_path, "--dispatch-interval", "0.2")
    try:
        account = Account.create()
        tasks: queue.Queue[TaskMsg] = queue.Queue()
        client = CoordinatorClient(info["ws_url"], call_timeout=5, submit_timeout=20)
        client.connect()
        client.register(account, "proc-slot", 0, "v-test", tasks.put)
        task = tasks.get(timeout=10)
        traces = TraceClient(info["l2_url"], timeout=5).get_traces(task.block_hashes)
        assert len(traces) == len(task.block_hashes)
        client.submit_proof(proof_msg(account, task.id, task_type=task.type))
        ledger = requests.get(info["control_url"] + "ledger", timeout=5).json()
        entry = next(t for t in ledger["tasks"] if t["id"] == task.id)
        assert entry["state"] == "verified"
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=20)
    assert proc.returncode == 0, errs
    assert "devnet ready ws_url=ws://127.0.0.1:" in out


def test_help_explains_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "roller.devnet", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--ws-port", "--l2-port", "--control-port", "--trace-dir", "--chunk-size",
                 "--batch", "--token-ttl", "--collection-time", "--session-attempts",
                 "--dispatch-interval", "--verifier", "--params-dir", "--log-level"):
        assert flag in out
