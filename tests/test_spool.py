"""The listener's spool of tasks held while the ledger is down (roller.spool)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from roller.protocol.messages import TaskMsg
from roller.spool import HeldTasks

A = TaskMsg(id="0x" + "aa" * 32, type=0, block_hashes=("0x" + "11" * 32,), sub_proofs=())
B = TaskMsg(id="0x" + "bb" * 32, type=0, block_hashes=("0x" + "22" * 32,), sub_proofs=())


def test_held_tasks_survive_the_process_and_the_file_goes_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "roller.db"
    spool = HeldTasks(path)
    spool.keep("gpu0", [A, B])
    spool.keep("gpu1", [B])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = HeldTasks(path)
    assert again.load() == {"gpu0": [A, B], "gpu1": [B]}
    again.keep("gpu0", [])
    assert HeldTasks(path).load() == {"gpu1": [B]}
    again.keep("gpu1", [])
    assert not path.exists()
    assert HeldTasks(path).load() == {}


def test_an_unreadable_file_is_moved_aside_not_ignored(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "roller.db"
    path.write_text('{"gpu0": [{"id": 1}]}')
    assert HeldTasks(path).load() == {}
    assert not path.exists() and (tmp_path / "roller.db.bad").exists()
    assert "held tasks file unreadable, moved aside" in caplog.text


def test_nothing_held_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "roller.db"
    HeldTasks(path).keep("gpu0", [])
    assert not path.exists()
