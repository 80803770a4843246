"""Fault injection of the test-only build (`python -m roller.ffi.build --features fault-injection`):
gen_chunk_proof really aborts / segfaults the process, or panics (caught, becomes ProverError)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from roller.errors import ProverError
from roller.ffi import default_library_path, load_prover

FAULT_LIB = (
    Path(__file__).resolve().parents[1]
    / "native/target/features-fault-injection/release/libroller_prover.so"
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not FAULT_LIB.exists(), reason="fault-injection build missing")]

CHILD = """
import sys
from roller.ffi import load_prover
load_prover(sys.argv[1], sys.argv[2]).gen_chunk_proof("[]")
"""


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("ROLLER_TEST_PARAMS") or str(
        tmp_path_factory.getbasetemp() / "prover_params"
    )


@pytest.mark.parametrize(("fault", "sig"), [("abort", signal.SIGABRT), ("segv", signal.SIGSEGV)])
def test_fault_kills_the_process(params: str, fault: str, sig: int) -> None:
    env = dict(os.environ, ROLLER_PROVER_FAULT=fault)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(FAULT_LIB), params], env=env, capture_output=True
    )
    assert proc.returncode == -sig


def test_panic_is_caught(params: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prover = load_prover(str(FAULT_LIB), params)
    monkeypatch.setenv("ROLLER_PROVER_FAULT", "panic")
    with pytest.raises(ProverError, match="prover panic: injected prover panic"):
        prover.gen_chunk_proof("[]")
    monkeypatch.delenv("ROLLER_PROVER_FAULT")
    with pytest.raises(ProverError, match="empty"):
        prover.gen_chunk_proof("[]")


def test_default_build_ignores_the_switch(params: str) -> None:
    env = dict(os.environ, ROLLER_PROVER_FAULT="abort")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, default_library_path(), params], env=env,
        capture_output=True, text=True,
    )
    assert proc.returncode == 1 and "ProverError: empty chunk" in proc.stderr
