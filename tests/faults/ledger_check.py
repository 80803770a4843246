"""The fault suite's ledger check and result table.

A task's fate is read from both ledgers: the devnet coordinator's (what was dispatched and
every submission it processed) and ours in Redis (started proving attempts, final state).
Every assignment (dispatch) of a task must end as exactly one accepted proof or one
reported failure (or, where the fault is a passed session window, expired in our ledger
and never submitted); a proof may be generated again only after a crash interrupted an
attempt, or for a new assignment that had no valid proof to resubmit (`proofs`); no
assignment may be answered twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from roller.ledger import TaskLedger, TaskRecord, TaskState


@dataclass
class TaskVerdict:
    task_id: str
    lost: bool
    duplicated: int
    why: str


@dataclass
class Row:
    fault: str
    repetitions: int = 0
    tasks: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def recovery(self) -> str:
        if not self.recover_s:
            return "-"
        mean = sum(self.recover_s) / len(self.recover_s)
        return f"{mean:.1f} s (max {max(self.recover_s):.1f})"


def processed(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Submissions the coordinator processed (not refused by its checks)."""
    return [s for s in task["submissions"] if not s.get("rejection")]


def find_record(ledger: TaskLedger, slots: Iterable[str], task_id: str) -> TaskRecord | None:
    for slot in slots:
        rec = ledger.get(slot, task_id)
        if rec is not None:
            return rec
    return None


def judge(task: dict[str, Any] | None, rec: TaskRecord | None, *, crashes: int = 0,
          may_expire: bool = False, proving_runs: int | None = None, proofs: int = 1
          ) -> TaskVerdict:
    """`proving_runs`: how many attempts reached the prover (from the worker logs); an
    attempt that a Redis outage stopped before it (counted in the ledger) proved nothing.
    `proofs`: how many proving runs the task's assignments needed."""
    task_id = task["id"] if task else (rec.task.id if rec else "?")
    if task is None:
        return TaskVerdict(task_id, True, 0, "not in the coordinator's ledger")
    subs = processed(task)
    assignments = max(1, len(task["dispatches"]))
    accepted = [s for s in subs if s["status"] == 0 and s["valid"] is True]
    failed = [s for s in subs if s["status"] != 0]
    attempts = rec.total_attempts if rec is not None else 0
    if proving_runs is not None:
        attempts = min(attempts, proving_runs)
    duplicated = max(0, len(subs) - assignments) + max(0, attempts - proofs - crashes)
    if rec is None:
        return TaskVerdict(task_id, True, duplicated, "never recorded by the listener")
    if may_expire and rec.state == TaskState.EXPIRED and not subs:
        return TaskVerdict(task_id, False, duplicated, "expired (counted)")
    # Where the window may pass, an assignment may end expired on our side, unanswered.
    answered = len(subs) == assignments or (may_expire and 0 < len(subs) < assignments)
    if answered and (accepted or failed):
        last = subs[-1]
        why = "accepted" if last in accepted else f"reported failure: {last['error']}"
        return TaskVerdict(task_id, False, duplicated,
                           why + (f" ({assignments} assignments)" if assignments > 1 else ""))
    return TaskVerdict(task_id, True, duplicated,
                       f"coordinator state={task['state']} submissions={len(subs)} "
                       f"ours={rec.state} attempts={attempts}")


def format_table(rows: Iterable[Row]) -> str:
    head = ("fault", "repetitions", "tasks", "lost", "duplicated", "time to recover")
    body = [(r.fault, str(r.repetitions), str(r.tasks), str(r.lost), str(r.duplicated),
             r.recovery()) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])
