"""Delivering stored answers from the outbox to the coordinator.

Only the listener submits, on the slot's registered session (any generation: the session
turns the stored ProofDetail and the recorded task into its wire message, signed on the WS
protocol, under the login token on HTTP), woken the moment a worker stores an answer; one
thread per slot, so an answer is never sent twice at once. A submission never proves. An answer is
retried with capped exponential backoff and jitter until the coordinator accepts it,
refuses it for good (the session says which refusals are final), or the task's session
window has passed; its record stays in the
outbox (Redis) the whole time, so a listener crash loses nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import StrEnum

from eth_account.signers.local import LocalAccount

from roller.config import RetryConfig
from roller.errors import ConnectionLost, CoordinatorError, WireFormatError
from roller.ledger import TaskLedger, TaskState
from roller.lifecycle import Observers, Window
from roller.lifecycle.events import Delivered, Refused, SubmitTried
from roller.logs import kv
from roller.protocol.session import CoordinatorSession

log = logging.getLogger("roller.submitter")  # the name its lines always had


class SubmitResult(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"
    EXPIRED = "expired"
    SKIPPED = "skipped"  # no answer to submit (already final, or no record)


def backoff_delay(attempt: int, retry: RetryConfig) -> float:
    """Capped exponential backoff with full jitter on the upper half."""
    ceiling = min(retry.submit_backoff_max_seconds,
                  retry.submit_backoff_seconds * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Submitter:
    def __init__(self, ledger: TaskLedger, retry: RetryConfig, window_seconds: float,
                 on_result: Callable[[str, SubmitResult], None] | None = None,
                 events: Observers | None = None) -> None:
        self.ledger = ledger
        self.retry = retry
        self.events = events or Observers()
        self.window = Window(window_seconds, self.events)
        self.on_result = on_result

    def submit(self, slot: str, task_id: str, account: LocalAccount,
               session: CoordinatorSession) -> SubmitResult:
        result = self._submit(slot, task_id, account, session)
        if result in (SubmitResult.DELIVERED, SubmitResult.RETRY, SubmitResult.REFUSED):
            self.events.emit(SubmitTried(slot, result.value))
        if self.on_result is not None:
            self.on_result(slot, result)
        return result

    def _submit(self, slot: str, task_id: str, account: LocalAccount,
                session: CoordinatorSession) -> SubmitResult:
        rec = self.ledger.get(slot, task_id)
        if rec is None or rec.proof is None or rec.state != TaskState.PROVED:
            return SubmitResult.SKIPPED
        fields = kv(task_id=task_id, slot=slot, assignment=rec.assignment)
        if self.window.passed(rec.received_at):
            self.window.expire(self.ledger, slot, task_id, rec.task.type, rec.received_at,
                               "submit")
            return SubmitResult.EXPIRED
        attempt = self.ledger.submit_attempt(slot, task_id)
        try:
            session.submit(rec.task, rec.proof, account)
        except CoordinatorError as exc:
            if exc.permanent:
                return self._refused(slot, task_id, rec.task.type, fields, exc.message)
            return self._retry_later(slot, task_id, attempt, exc.message)
        except WireFormatError as exc:
            # The recorded task cannot be answered in this generation (e.g. a WS-era record
            # after the config moved to HTTP): no retry changes that.
            return self._refused(slot, task_id, rec.task.type, fields, str(exc))
        except ConnectionLost as exc:
            return self._retry_later(slot, task_id, attempt, str(exc))
        if rec.proof.status == 0:
            self.ledger.finish(slot, task_id, TaskState.DELIVERED, "accepted")
            self.events.emit(Delivered(rec.task.type, rec.age()))
        else:
            self.ledger.finish(slot, task_id, TaskState.FAILED, f"reported: {rec.proof.error}")
        log.info("proof delivered %s status=%d attempt=%d", fields, rec.proof.status, attempt)
        return SubmitResult.DELIVERED

    def _refused(self, slot: str, task_id: str, prove_type: int, fields: str,
                 reason: str) -> SubmitResult:
        self.ledger.finish(slot, task_id, TaskState.REFUSED, reason)
        log.error("proof refused for good %s error=%r", fields, reason)
        self.events.emit(Refused(prove_type))
        return SubmitResult.REFUSED

    def _retry_later(self, slot: str, task_id: str, attempt: int, reason: str) -> SubmitResult:
        delay = backoff_delay(attempt, self.retry)
        self.ledger.postpone(slot, task_id, delay)
        log.warning("submit failed, proof kept in outbox %s",
                    kv(task_id=task_id, slot=slot, attempt=attempt,
                       retry_in_s=round(delay, 1), error=reason))
        return SubmitResult.RETRY

    def drain(self, slot: str, account: LocalAccount, session: CoordinatorSession,
              now: float | None = None) -> int:
        """Submit every due proof of `slot`; returns how many were delivered. Once an answer
        has left the outbox for good (delivered, refused, expired) the session is poked:
        a polling generation may ask for the next task now."""
        delivered = finished = 0
        for task_id in self.ledger.outbox_due(slot, now or time.time()):
            if not session.connected:
                break
            result = self.submit(slot, task_id, account, session)
            delivered += result is SubmitResult.DELIVERED
            finished += result in (SubmitResult.DELIVERED, SubmitResult.REFUSED,
                                   SubmitResult.EXPIRED)
        if finished:
            session.poke()
        return delivered
