"""`celery -A gpu_busy_worker worker`: the roller's worker for bench/gpu_busy.py.

The real worker (roller.tasks, roller.worker.job), plus two timestamps per job in the task's
ledger record (`bench_job_at` when the job starts, `bench_proved_at` when the prover
returns), and, with $GPU_BUSY_MOCK_SECONDS set, the mock prover sleeping that long per
proof instead of the native one (then the native start check is skipped too). This module
lives in bench/, never on a production worker's import path: the knob cannot reach one.
"""

from __future__ import annotations

import os
import time

import roller.worker.boot
import roller.worker.job
import roller.worker.prover
from roller import app
from roller.config import RollerConfig
from roller.ffi.mock import MockProver
from roller.ledger import TaskRecord
from roller.protocol.messages import ProofDetail
from roller.worker.job import JobContext

__all__ = ["app"]

_real_prove = roller.worker.job._prove
MOCK_SECONDS = os.environ.get("GPU_BUSY_MOCK_SECONDS")


def _prove(ctx: JobContext, rec: TaskRecord) -> ProofDetail:
    ctx.ledger.note(rec.slot, rec.task.id, bench_job_at=time.time())
    try:
        return _real_prove(ctx, rec)
    finally:
        ctx.ledger.note(rec.slot, rec.task.id, bench_proved_at=time.time())


def _no_prover_check(cfg: RollerConfig, queues: set[str]) -> None:
    """The mock needs no library: nothing to check."""


roller.worker.job._prove = _prove
if MOCK_SECONDS:
    _mock = MockProver(delay=float(MOCK_SECONDS))
    roller.worker.prover.process_prover = lambda: _mock  # type: ignore[assignment]
    roller.worker.boot._check_prover = _no_prover_check
