"""The dispatcher: a coordinator notification recorded in the ledger first (which tells a new
assignment from a duplicate), then sent as one Celery job with a deterministic id to the
slot's queue; or, for a task this identity will not prove (a hard fork this host does not
hold, roller.forks; roller.lifecycle.budget), a failure report at once with no job.

Failure model: every Redis, kombu or Celery error is raised as BrokerUnavailable. A
notification not yet recorded is kept by the slot session, which retries it; a record not yet
sent stays in `received`, which that retry or the reconciliation sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery

from roller.broker import BROKER_ERRORS
from roller.config import RetryConfig, SlotConfig, proof_kind
from roller.errors import BrokerUnavailable, ForkNotHeld
from roller.forks import PRE_FORK, fork_to_prove
from roller.ledger import AssignResult, TaskLedger, TaskState, job_id
from roller.lifecycle import Budget, Observers
from roller.lifecycle.events import AnsweredWithoutJob, Deduplicated, Queued
from roller.lifecycle.failures import failure
from roller.logs import kv
from roller.protocol.http_messages import task_generation
from roller.protocol.messages import FailureClass, ProofDetail, TaskMsg, slot_proves

# Every part of the listener logs as `roller.listener`: the name its lines always had.
log = logging.getLogger("roller.listener")


class Dispatcher:
    """Records each notification durably, then enqueues its one Celery job on the slot's
    queue, or answers it at once without one (the module's docstring). Every Redis, kombu or
    Celery error is mapped to BrokerUnavailable here."""

    def __init__(self, app: Celery, ledger: TaskLedger, wake: Callable[[str], None],
                 retry: RetryConfig | None = None, events: Observers | None = None,
                 forks: tuple[str, ...] = (PRE_FORK,), login_fork: str = "") -> None:
        self.app = app
        self.ledger = ledger
        self.wake = wake
        self.budget = Budget(retry or RetryConfig())
        # The hard forks this host holds (`prover.forks`) and the one its H2 login names: a
        # task of another fork is answered at once, with no job and no trace fetch.
        self.forks = forks
        self.login_fork = login_fork
        self.events = events or Observers()
        # The liveness rule for a re-notified task in flight (the listener's Reconciler).
        self.check: Callable[[SlotConfig, str], int] | None = None

    def accept(self, slot: SlotConfig, task: TaskMsg, epoch: int) -> AssignResult | None:
        """Act on one notification (the rule is in roller.ledger.transitions); None if
        ignored."""
        fields = kv(task_id=task.id, slot=slot.name)
        if not slot_proves(slot.prove_type, task.type):
            log.error("task of the wrong type ignored %s type=%s want=%s", fields, task.type,
                      slot.prove_type)
            return None
        try:
            assigned = self.ledger.assign(slot.name, task, epoch)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot record task {task.id} of slot {slot.name}: "
                                    f"{exc}") from exc
        result, state = assigned.result, assigned.state
        if result in (AssignResult.REPROVE, AssignResult.RESUBMIT, AssignResult.CARRIED):
            log.info("task assigned again %s assignment=%d result=%s state=%s", fields,
                     assigned.assignment, result, state)
        if result is AssignResult.IN_FLIGHT:
            log.info("duplicate task notification, not enqueued %s state=%s", fields, state)
            self.events.emit(Deduplicated(slot.name))
        if state == TaskState.RECEIVED:
            if not self._answered_without_job(slot, task, fields):
                self.send(slot, task.id)
        elif state == TaskState.PROVED:
            self.wake(slot.name)  # its answer is due in the outbox now
        elif self.check is not None:
            # In flight: a re-notification of a task nothing works on any more re-drives it
            # (by the liveness rule, grace included).
            try:
                self.check(slot, task.id)
            except BROKER_ERRORS as exc:
                raise BrokerUnavailable(f"cannot check task {task.id} of slot {slot.name}: "
                                        f"{exc}") from exc
        return result

    def _answered_without_job(self, slot: SlotConfig, task: TaskMsg, fields: str) -> bool:
        """Answer a received task at once if this identity will not prove it (the module's
        docstring); True if it needs no job. `fields`: the task's log fields."""
        try:
            fork_to_prove(task.http_task, self.forks, self.login_fork)
        except ForkNotHeld as exc:
            detail: ProofDetail | None = failure(task, FailureClass.DETERMINISTIC, str(exc))
        else:
            detail = None
        try:
            if detail is None:
                report = self.ledger.unprovable(slot.name, task.id)
                started = 0 if report is not None else self.ledger.task_attempts(slot.name,
                                                                                 task.id)
                detail = self.budget.at_assignment(task, report, started)
            if detail is None:
                return False
            moved = self.ledger.answer_now(slot.name, detail)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot answer task {task.id} of slot {slot.name}: "
                                    f"{exc}") from exc
        if not moved.ok:
            # Its job was sent meanwhile (the reconciliation): that one answers the task.
            log.info("task not answered at once, its job is out %s state=%s", fields,
                     moved.state)
            return True
        log.info("task answered at once without a job %s reason=%r", fields, detail.error)
        self.events.emit(AnsweredWithoutJob(slot.name, detail.failure_class or ""))
        self.wake(slot.name)  # its answer is due in the outbox now
        return True

    def send(self, slot: SlotConfig, task_id: str) -> None:
        """Enqueue the task's job and mark it queued; BrokerUnavailable leaves the record in
        `received`, which the sender's retry or the reconciliation sends again."""
        try:
            rec = self.ledger.get(slot.name, task_id)
            if rec is None:
                return
            task = rec.task
            size = len(task.sub_proofs) if task.type else len(task.block_hashes)
            # The kind label names the coordinator generation and the hard fork too, for
            # Flower's job list.
            try:
                fork = fork_to_prove(task.http_task, self.forks, self.login_fork)
            except ForkNotHeld:
                fork = "?"  # answered by its job without proving (roller.worker.job)
            label = f"{proof_kind(task.type)} {task_generation(task)} {fork}"
            # A new drive number per message: a stale message of an earlier drive is told
            # apart by its job (roller.ledger).
            drive = self.ledger.begin_send(slot.name, task_id)
            self.app.send_task("roller.prove", args=(slot.name, task_id, label, size, drive),
                               task_id=job_id(slot.name, task_id, drive), queue=slot.queue,
                               ignore_result=True)
            self.ledger.mark_queued(slot.name, task_id)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot enqueue task {task_id} of slot {slot.name}: "
                                    f"{exc}") from exc
        self.events.emit(Queued(slot.queue))
        log.info("job queued %s", kv(task_id=task_id, slot=slot.name, queue=slot.queue))
