"""Chaos as a test (issue 31 item 7; tests/faults/chaos.py has the schedule and the judge).

Overlapping seeded faults of every kind on production settings while tasks are pushed
continuously, for ROLLER_CHAOS_MINUTES (3 here, in `make test`; `make chaos` runs 30), judged
from the coordinator's ledger and ours. The seed is printed first (`chaos seed=N`) and in the
fault table's notes; ROLLER_CHAOS_SEED=N replays the schedule. ROLLER_CHAOS_LOGS=dir keeps the
cluster's logs and the report (`dir/seed-N/`) past a passing run.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest
from chaos import Chaos
from faultlib import ROWS, FaultCluster, start_cluster
from ledger_check import Row

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def say(line: str) -> None:
    print(line, flush=True)


def test_chaos(tmp_path_factory: pytest.TempPathFactory, params_dir: Path,
               fault_lib: Path) -> None:
    minutes = float(os.environ.get("ROLLER_CHAOS_MINUTES") or 3)
    seed = int(os.environ.get("ROLLER_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    say(f"chaos seed={seed}")
    started = time.monotonic()
    cluster = start_cluster(tmp_path_factory.mktemp("chaos"), params_dir, fault_lib,
                            production=True)
    try:
        fc = FaultCluster(cluster).wait_registered()
        say(f"cluster up in {time.monotonic() - started:.0f} s")
        chaos = Chaos(fc, seed, minutes, say=say)
        chaos.run()
        verdict = chaos.judge()
        report = verdict.report()
        say(report)
        (cluster.workdir / "chaos-report.txt").write_text(report + "\n")
        row = ROWS.setdefault(f"chaos {minutes:g} min (seed {seed})",
                              Row(f"chaos {minutes:g} min (seed {seed})"))
        row.repetitions += sum(r.count for r in verdict.kinds.values())
        row.tasks += verdict.pushed
        row.lost += len(verdict.unanswered)
        row.duplicated += len(verdict.twice) + len(verdict.unforced)
        row.notes += verdict.totals()
        row.problems += verdict.failures()
        failures = verdict.failures()
        assert not failures, f"chaos seed={seed}:\n" + "\n".join(failures)
    except Exception:
        if os.environ.get("ROLLER_CHAOS_SHOW_LOGS", "1") != "0":
            print(cluster.logs()[-30000:])
        raise
    finally:
        cluster.stop()
        keep = os.environ.get("ROLLER_CHAOS_LOGS")
        if keep:  # the cluster's logs and the report, kept past a passing run
            out = Path(keep) / f"seed-{seed}"
            out.mkdir(parents=True, exist_ok=True)
            for path in [*cluster.workdir.glob("*.log"), *cluster.workdir.glob("*.txt")]:
                shutil.copy(path, out / path.name)
        say(f"chaos seed={seed}: {time.monotonic() - started:.0f} s in all")
