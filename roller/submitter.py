"""Delivering stored proofs from the outbox to the coordinator.

Used twice: by the worker right after proving (the fast path) and by the listener's outbox
drainer (retries after a refusal, a disconnection or a restart). A submission never proves:
it signs the stored ProofDetail and sends it. A proof is retried with capped exponential
backoff and jitter until the coordinator accepts it, refuses it for good, or the task's
session window has passed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import StrEnum

from eth_account.signers.local import LocalAccount

from roller import metrics
from roller.config import RetryConfig, proof_kind
from roller.coordinator_client import CoordinatorClient
from roller.errors import ConnectionLost, CoordinatorError
from roller.ledger import FINAL_STATES, TaskLedger, TaskState
from roller.logs import kv
from roller.protocol.messages import ProofMsg

log = logging.getLogger(__name__)

# Refusals that no retry can cure: the session is gone or our message is wrong.
PERMANENT_REFUSALS = (
    "does not existID", "is not eligible to partake", "auth signature verify fail",
)
SUBMIT_LOCK_SECONDS = 3600


class SubmitResult(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"
    EXPIRED = "expired"
    SKIPPED = "skipped"  # already final, or another process is submitting it


def backoff_delay(attempt: int, retry: RetryConfig) -> float:
    """Capped exponential backoff with full jitter on the upper half."""
    ceiling = min(retry.submit_backoff_max_seconds,
                  retry.submit_backoff_seconds * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Submitter:
    def __init__(self, ledger: TaskLedger, retry: RetryConfig, window_seconds: float,
                 on_result: Callable[[str, SubmitResult], None] | None = None) -> None:
        self.ledger = ledger
        self.retry = retry
        self.window_seconds = window_seconds
        self.on_result = on_result

    def submit(self, slot: str, task_id: str, account: LocalAccount,
               client: CoordinatorClient) -> SubmitResult:
        result = self._submit(slot, task_id, account, client)
        if result in (SubmitResult.DELIVERED, SubmitResult.RETRY, SubmitResult.REFUSED):
            metrics.SUBMIT_ATTEMPTS.labels(slot, result.value).inc()
        if self.on_result is not None:
            self.on_result(slot, result)
        return result

    def _submit(self, slot: str, task_id: str, account: LocalAccount,
                client: CoordinatorClient) -> SubmitResult:
        rec = self.ledger.get(slot, task_id)
        if rec is None or rec.proof is None or rec.state in FINAL_STATES:
            return SubmitResult.SKIPPED
        if rec.age() > self.window_seconds:
            self.ledger.finish(slot, task_id, TaskState.EXPIRED, "session window passed")
            log.error("proof dropped: session window passed %s",
                      kv(task_id=task_id, slot=slot, age_s=round(rec.age()),
                         window_s=self.window_seconds))
            metrics.proof_outcome(rec.task.type, "expired")
            return SubmitResult.EXPIRED
        if not self.ledger.acquire_submit(slot, task_id, SUBMIT_LOCK_SECONDS):
            return SubmitResult.SKIPPED
        attempt = self.ledger.submit_attempt(slot, task_id)
        try:
            client.submit_proof(ProofMsg.signed(rec.proof, account))
        except CoordinatorError as exc:
            if any(text in exc.message for text in PERMANENT_REFUSALS):
                self.ledger.finish(slot, task_id, TaskState.REFUSED, exc.message)
                log.error("proof refused for good %s",
                          kv(task_id=task_id, slot=slot, error=exc.message))
                metrics.proof_outcome(rec.task.type, "refused")
                return SubmitResult.REFUSED
            return self._retry_later(slot, task_id, attempt, exc.message)
        except ConnectionLost as exc:
            return self._retry_later(slot, task_id, attempt, str(exc))
        finally:
            self.ledger.release_submit(slot, task_id)
        outcome = "accepted" if rec.proof.status == 0 else f"reported: {rec.proof.error}"
        self.ledger.finish(slot, task_id, TaskState.DELIVERED, outcome)
        if rec.proof.status == 0:
            metrics.proof_outcome(rec.task.type, "accepted")
            metrics.END_TO_END_SECONDS.labels(proof_kind(rec.task.type)).observe(rec.age())
        log.info("proof delivered %s",
                 kv(task_id=task_id, slot=slot, status=rec.proof.status, attempt=attempt))
        return SubmitResult.DELIVERED

    def _retry_later(self, slot: str, task_id: str, attempt: int, reason: str) -> SubmitResult:
        delay = backoff_delay(attempt, self.retry)
        self.ledger.postpone(slot, task_id, delay)
        log.warning("submit failed, proof kept in outbox %s",
                    kv(task_id=task_id, slot=slot, attempt=attempt,
                       retry_in_s=round(delay, 1), error=reason))
        return SubmitResult.RETRY

    def drain(self, slot: str, account: LocalAccount, client: CoordinatorClient,
              now: float | None = None) -> int:
        """Submit every due proof of `slot`; returns how many were delivered."""
        delivered = 0
        for due_slot, task_id in self.ledger.outbox_due(now or time.time()):
            if due_slot == slot and client.connected:
                delivered += self.submit(slot, task_id, account, client) is SubmitResult.DELIVERED
        return delivered
