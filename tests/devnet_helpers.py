"""Shared helpers of the devnet tests: a raw JSON-RPC WebSocket and proof builders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket
from eth_account.signers.local import LocalAccount

from roller.devnet import Devnet
from roller.devnet.traces import DATA_DIR
from roller.protocol.messages import AggProof, AuthMsg, Identity, ProofDetail, ProofMsg

TRACES = DATA_DIR / "traces"
# blockTrace_02 -> 03 is the only chain of the fixture set: one chunk task with chunk size 2.
BLOCK_02 = "0xc7b6c7022c8386cdaf6fcd3d4f8d03dce257ae3664a072fdce511ecefce73ad0"
BLOCK_03 = "0x13ddd94de9c585c50c6885d4ef649292c2624ae7c8fc73781ee8785f2564b44c"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO32 = bytes(32)


class RawWs:
    """A bare JSON-RPC client over websocket-client (no Origin header unless given)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        if "origin" not in kwargs and "header" not in kwargs:
            kwargs["suppress_origin"] = True
        self.ws = websocket.create_connection(url, timeout=10, **kwargs)
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []
        self.frames: list[str] = []

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def recv(self) -> Any:
        frame = self.ws.recv()
        assert isinstance(frame, str), "server frames must be text"
        self.frames.append(frame)
        return json.loads(frame)

    def call(self, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        msg.update(extra)
        self.ws.send(json.dumps(msg))
        return self.wait_answer(self.next_id)

    def wait_answer(self, request_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout  # each recv also times out (10 s)
        while time.monotonic() < deadline:
            msg = self.recv()
            if isinstance(msg, dict) and "id" not in msg:
                self.notifications.append(msg)
                continue
            if isinstance(msg, dict) and msg.get("id") == request_id:
                return msg
        raise AssertionError(f"no answer to request {request_id!r} within {timeout} s")

    def next_notification(self, timeout: float = 30.0) -> dict[str, Any]:
        if self.notifications:
            return self.notifications.pop(0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv()
            if isinstance(msg, dict) and "id" not in msg:
                return msg
        raise AssertionError(f"no notification within {timeout} s")

    def close(self) -> None:
        self.ws.close()


def identity(name: str = "slot0", token: str = "", roller_type: int = 0) -> Identity:
    return Identity(name=name, roller_type=roller_type, timestamp=int(time.time()),
                    version="v4.0.2-test", token=token)


def auth(account: LocalAccount, name: str = "slot0", token: str = "",
         roller_type: int = 0) -> AuthMsg:
    return AuthMsg.signed(identity(name, token, roller_type), account)


def high_s(signature: str) -> str:
    """The malleable twin of a signature: s -> n - s, v flipped (same key recovers)."""
    raw = bytes.fromhex(signature[2:])
    s = int.from_bytes(raw[32:64], "big")
    return "0x" + (raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([raw[64] ^ 1])).hex()


def v_plus_27(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()


def good_proof(block_count: int = 2) -> AggProof:
    return AggProof(proof=ZERO32, instance=ZERO32, final_pair=ZERO32, vk=b"",
                    block_count=block_count)


def proof_msg(account: LocalAccount, task_id: str, *, task_type: int = 0, status: int = 0,
              proof: AggProof | None = None, error: str = "") -> ProofMsg:
    if proof is None and status == 0:
        proof = good_proof()
    detail = ProofDetail(id=task_id, type=task_type, status=status, proof=proof, error=error)
    return ProofMsg.signed(detail, account)


def make_devnet(**overrides: Any) -> Devnet:
    """An in-process devnet on ephemeral loopback ports: stand-in verifier, the fixture
    traces, only pushed tasks, a fast dispatch tick, seeded roller choice."""
    settings: dict[str, Any] = dict(ws_port=0, l2_port=0, control_port=0, verifier="stand-in",
                                    trace_dir=TRACES, chunk_tasks=False,
                                    dispatch_interval=0.1, seed=1)
    settings.update(overrides)
    return Devnet(**settings)


def stop_devnet_process(proc: subprocess.Popen[str]) -> str:
    """SIGTERM a devnet process; it must exit 0. Returns its stdout."""
    proc.send_signal(signal.SIGTERM)
    out, errs = proc.communicate(timeout=20)
    assert proc.returncode == 0, errs
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


def start_devnet_process(tmp_path: Path, *args: str
                         ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`python -m roller.devnet` on ephemeral loopback ports with the stand-in verifier and
    the test traces, once it has written its ready file: (process, ready info)."""
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "roller.devnet", "--ws-port", "0", "--l2-port", "0",
         "--control-port", "0", "--verifier", "stand-in", "--trace-dir", str(TRACES),
         "--chunk-size", "2", "--ready-file", str(ready), "--log-level", "WARNING", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=30)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc, json.loads(ready.read_text())


def register_raw(ws: RawWs, account: LocalAccount, name: str = "slot0",
                 roller_type: int = 0) -> str:
    """Token + subscribe over a raw socket; returns the subscription id."""
    token = ws.call("roller_requestToken", [auth(account, name).to_json()])["result"]
    answer = ws.call("roller_subscribe",
                     ["register", auth(account, name, token, roller_type).to_json()])
    assert "result" in answer, answer
    return str(answer["result"])
