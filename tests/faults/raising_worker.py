"""`celery -A raising_worker worker`: the roller's worker, except that the first proving
attempt of each task raises an unexpected error after the attempt is counted, as a bug in
the job would. Marks live in $ROLLER_TEST_RAISE_DIR (one file per task id)."""

from __future__ import annotations

import os
from pathlib import Path

import roller.job
from roller import app
from roller.job import JobContext
from roller.ledger import TaskRecord
from roller.protocol.messages import ProofDetail

__all__ = ["app"]

_real_prove = roller.job._prove
MARKS = Path(os.environ["ROLLER_TEST_RAISE_DIR"])


def _prove(ctx: JobContext, rec: TaskRecord) -> ProofDetail:
    mark = MARKS / rec.task.id
    if not mark.exists():
        mark.touch()
        raise RuntimeError(f"injected job failure task_id={rec.task.id}")
    return _real_prove(ctx, rec)


roller.job._prove = _prove
