"""The attempt budgets: how often this roller tries one task before it answers without
proving. Both checks are here, with what the answer says.

- At an assignment (the listener's dispatcher): a task this identity cannot prove (a
  deterministic failure the job remembered, roller.ledger.unprovable) is answered at once with
  the same report; so is a task this roller already started `retry.max_task_attempts` times
  over all its assignments, so a coordinator that hands it back (H2/H3 do at once) costs no
  GPU time and no trace fetch, and one roller never spends a task's `session_attempts` for
  the whole network (the default stays below Scroll's 5).
- At an attempt (the job): an attempt past `retry.max_prove_attempts` for this assignment, or
  past `retry.max_task_attempts` for the task, answers `zk proving panic` without proving:
  every earlier attempt died with its process (a prover crash takes the worker down), and
  the next one would crash the next worker too.

Failure model: pure decisions over what the ledger counted; the callers act on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from roller.config import RetryConfig
from roller.ledger import Attempt
from roller.lifecycle.failures import BUDGET_SPENT, PROVING_PANIC, failure
from roller.protocol.messages import FailureClass, ProofDetail, TaskMsg


@dataclass(frozen=True)
class Budget:
    retry: RetryConfig

    def at_assignment(self, task: TaskMsg, unprovable: str | None,
                      started: int) -> ProofDetail | None:
        """The answer to give a received task at once, without a job, or None to prove it:
        `unprovable` is the report this identity remembered for it, `started` the attempts
        already started across its assignments."""
        if unprovable is not None:
            return failure(task, FailureClass.DETERMINISTIC, unprovable)
        cap = self.retry.max_task_attempts
        if started < cap:
            return None
        return failure(task, FailureClass.TRANSIENT, f"{BUDGET_SPENT}: {started} of {cap} attempts")

    def at_attempt(self, task: TaskMsg, attempt: Attempt) -> ProofDetail | None:
        """The answer instead of proving, if `attempt` is past a budget, else None."""
        if (attempt.attempts > self.retry.max_prove_attempts
                or attempt.total_attempts > self.retry.max_task_attempts):
            return failure(task, FailureClass.TRANSIENT, PROVING_PANIC)
        return None
