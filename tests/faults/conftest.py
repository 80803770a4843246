"""Fixtures of the fault suite (see faultlib) and the result table printed at the end of the
run (also written to $ROLLER_FAULTS_TABLE when set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultlib import FAULT_LIB, ROWS, FaultCluster, start_cluster
from ledger_check import format_table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    table = format_table(ROWS.values())
    terminalreporter.write_sep("=", "fault suite")
    terminalreporter.write_line(table)
    for row in ROWS.values():
        for line in row.notes + row.problems:
            terminalreporter.write_line(f"{row.fault}: {line}")
    out = os.environ.get("ROLLER_FAULTS_TABLE")
    if out:
        notes = [f"- {r.fault}: {n}" for r in ROWS.values() for n in r.notes + r.problems]
        Path(out).write_text("\n".join([table, "", *notes]) + "\n")


@pytest.fixture(scope="session")
def fault_lib() -> Path:
    if not FAULT_LIB.exists():
        from roller.ffi.build import build

        build("fault-injection")
    return FAULT_LIB


@pytest.fixture(scope="session")
def fc(tmp_path_factory: pytest.TempPathFactory, params_dir: Path, fault_lib: Path
       ) -> Iterator[FaultCluster]:
    """The cluster most faults share (each fault checks only its own tasks)."""
    cluster = start_cluster(tmp_path_factory.mktemp("faults"), params_dir, fault_lib)
    failed = False
    try:
        yield FaultCluster(cluster).wait_registered()
    except Exception:
        failed = True
        raise
    finally:
        if failed or os.environ.get("ROLLER_FAULTS_SHOW_LOGS"):
            print(cluster.logs()[-30000:])
        cluster.stop()
