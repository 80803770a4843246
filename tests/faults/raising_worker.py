"""`celery -A raising_worker worker`: the roller's worker, except that the first proving
attempt of each task raises an unexpected error after the attempt is counted, as a bug in
the job would. Marks live in $ROLLER_TEST_RAISE_DIR (one file per task id)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import roller.worker.job
from roller import app
from roller.ledger import TaskRecord
from roller.protocol.messages import ProofDetail
from roller.worker.job import JobContext

__all__ = ["app"]

_real_prove = roller.worker.job._prove
MARKS = Path(os.environ["ROLLER_TEST_RAISE_DIR"])


def _prove(ctx: JobContext, rec: TaskRecord, *args: Any, **kwargs: Any) -> ProofDetail:
    mark = MARKS / rec.task.id
    if not mark.exists():
        mark.touch()
        raise RuntimeError(f"injected job failure task_id={rec.task.id}")
    return _real_prove(ctx, rec, *args, **kwargs)


roller.worker.job._prove = _prove
