"""Proving sessions: dispatch, results, timeout and retry, proof handling (spec 2.3, 5.3-5.6).

Main-line coordinator behaviour (df97200a4 / 95124ce70), in memory. Runs on the event loop
thread; only proof verification leaves it (a thread pool, like Go's verifier workers).

With variant ws-2023-07 (e78099414, spec 8) these rules change: a round dispatches at most
one batch and one chunk task; a submission is checked against the assignment records
(every dispatch of the task), not the live pool, so it needs no registration, and one for
a session that has ended returns null (a status-0 proof marks a task not yet verified
as proved, and is never verified: Go stores it and drops the verification result); a key
is freed only by a verified proof (after a failure report, an invalid proof or a timeout
it stays busy), and a registration reloads no task ids (Go reloads in pages of 100 and
drops the last, partial page), so re-registering frees it. A timeout (collection_time
after dispatch) marks the session's rollers invalid and puts the task back to unassigned;
the dispatch loop re-sends it, or fails it instead once it has been dispatched
session_attempts times (counted since the last re-queue).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from roller.devnet.metrics import Metrics
from roller.devnet.pool import RollerPool
from roller.devnet.rpc import method_error
from roller.devnet.tasksource import (
    ASSIGNED,
    FAILED,
    PROVED,
    UNASSIGNED,
    VERIFIED,
    TaskBook,
    TaskRecord,
)
from roller.devnet.verifier import Verdict, Verifier
from roller.protocol.messages import ProofDetail, WsVariant

log = logging.getLogger(__name__)

# Roller status inside a session (spec 3.5).
ROLLER_ASSIGNED, ROLLER_VALID, ROLLER_INVALID = 0, 1, 2
PROVE_TYPE_NAMES = {0: "Basic Prove", 1: "Aggregator Prove"}


def prove_type_name(value: int) -> str:
    return PROVE_TYPE_NAMES.get(value, "Illegal Prove type")


@dataclass
class SessionConfig:
    rollers_per_session: int = 1
    session_attempts: int = 2
    collection_time: float = 180 * 60.0
    submit_delay: float = 0.0


@dataclass
class RollerStatus:
    pk: str
    name: str
    status: int = ROLLER_ASSIGNED


@dataclass
class Session:
    task: TaskRecord
    rollers: dict[str, RollerStatus]
    attempts: int
    created_at: float = field(default_factory=time.time)
    timer: asyncio.TimerHandle | None = None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.task.id,
            "prove_type": self.task.type,
            "attempts": self.attempts,
            "start_timestamp": int(self.created_at),
            "rollers": {
                pk: {"public_key": pk, "name": r.name, "status": r.status}
                for pk, r in self.rollers.items()
            },
        }


class SessionManager:
    def __init__(
        self,
        config: SessionConfig,
        pool: RollerPool,
        book: TaskBook,
        verifier: Verifier,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
        rng: random.Random | None = None,
        variant: WsVariant = WsVariant.WS_2023_06,
    ) -> None:
        self.config = config
        self.variant = variant
        self._v0723 = variant is WsVariant.WS_2023_07
        self.pool = pool
        self.book = book
        self.verifier = verifier
        self.metrics = metrics
        self.executor = executor
        self.rng = rng or random.Random()
        self.sessions: dict[str, Session] = {}
        self._attempts: dict[str, int] = {}  # 2023-07: dispatches per task since re-queue
        self.unmatched_submissions: list[dict[str, Any]] = []
        self.running = True

    # -- dispatch (spec 5.4) --------------------------------------------------------

    def dispatch_round(self) -> None:
        """Aggregator tasks first, then up to N basic tasks (N = idle basic rollers)."""
        if not self.running:
            return
        if self._v0723:
            for task_type in (1, 0):
                self._dispatch_one_0723(task_type)
            return
        for task in self.book.unassigned(1):
            if not self.start_session(task):
                break
        for task in self.book.unassigned(0)[:len(self.pool.idle(0))]:
            if not self.start_session(task):
                break

    def _dispatch_one_0723(self, task_type: int) -> None:
        """e78099414: per round at most one task of each type, failed instead of sent once
        its attempts reach session_attempts."""
        for task in self.book.unassigned(task_type)[:1]:
            if self._attempts.get(task.id, 0) >= self.config.session_attempts:
                task.state = FAILED
                self.metrics.inc("coordinator/sessions/failed/total")
                log.info("task failed reason=attempts task_id=%s attempts=%d", task.id,
                         self._attempts[task.id])
                return
            self.start_session(task)

    def start_session(self, task: TaskRecord, prev: Session | None = None) -> bool:
        """Send the task to up to rollers_per_session random idle rollers of its type."""
        sent = []
        msg = task.task_msg(self.variant)
        for _ in range(self.config.rollers_per_session):
            idle = [n for n in self.pool.idle(task.type) if n not in sent
                    and task.pinned_pk in (None, n.pk)]
            if not idle:
                break
            node = self.rng.choice(idle)
            try:
                node.channel.put_nowait(msg)
            except asyncio.QueueFull:
                log.warning("dispatch skipped reason=roller_channel_full pk=%s", node.pk)
                continue
            node.task_ids.add(task.id)
            self.metrics.roller_set(node.pk, "roller/proofs/last/assigned/timestamp", time.time())
            sent.append(node)
        if not sent:
            return False
        if prev is not None and prev.timer is not None:
            prev.timer.cancel()
        if self._v0723:
            self._attempts[task.id] = attempts = self._attempts.get(task.id, 0) + 1
        else:
            attempts = prev.attempts + 1 if prev else 1
        session = Session(
            task=task,
            rollers={n.pk: RollerStatus(n.pk, n.name) for n in sent},
            attempts=attempts,
        )
        self.sessions[task.id] = session
        task.state = ASSIGNED
        task.dispatches.append(
            {
                "attempt": session.attempts,
                "at": session.created_at,
                "to": [{"pk": n.pk, "name": n.name} for n in sent],
            }
        )
        self._arm(session)
        self._update_active()
        log.info(
            "task dispatched task_id=%s type=%s attempt=%s to=%s",
            task.id, task.type, session.attempts, ",".join(n.name for n in sent),
        )
        return True

    # -- timers (spec 5.5) ----------------------------------------------------------

    def _arm(self, session: Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
        loop = asyncio.get_running_loop()
        session.timer = loop.call_later(self.config.collection_time, self._on_timeout, session)

    def _on_timeout(self, session: Session) -> None:
        if self.sessions.get(session.task.id) is not session:
            return
        session.timer = None
        task = session.task
        if self._v0723:
            # Rows still assigned time out (invalid, failure type timeout) and their task
            # is unassigned again; the keys stay busy (spec 8). Answered rows are not
            # touched, so a task whose every row failed stays failed.
            timed_out = [r for r in session.rollers.values() if r.status == ROLLER_ASSIGNED]
            for status in timed_out:
                status.status = ROLLER_INVALID
            del self.sessions[task.id]
            self._update_active()
            if timed_out:
                task.state = UNASSIGNED
                self.metrics.inc("coordinator/sessions/timeout/total")
                log.info("session timed out task_id=%s attempts=%s final=unassigned",
                         task.id, session.attempts)
            return
        if session.attempts < self.config.session_attempts and self.start_session(task, session):
            for pk in session.rollers:
                self._release(pk, task.id, verified=False)
            log.info("session retried task_id=%s attempt=%s", task.id, session.attempts + 1)
            return
        task.state = FAILED
        for pk in session.rollers:
            self._release(pk, task.id, verified=False)
        del self.sessions[task.id]
        self.metrics.inc("coordinator/sessions/timeout/total")
        self._update_active()
        log.info("session timed out task_id=%s attempts=%s final=failed", task.id,
                 session.attempts)

    def close(self, task_id: str) -> None:
        """Drop a finished task's lingering session (its timer and its rollers' claims)."""
        self._attempts.pop(task_id, None)
        session = self.sessions.pop(task_id, None)
        if session is None:
            return
        if session.timer is not None:
            session.timer.cancel()
        for pk in session.rollers:
            self.pool.free_task(pk, task_id)
        self._update_active()

    def suspend(self) -> None:
        """Coordinator down: no timers run, no dispatch."""
        self.running = False
        for session in self.sessions.values():
            if session.timer is not None:
                session.timer.cancel()
                session.timer = None

    def resume(self) -> None:
        """Coordinator (re)started: sessions restored with fresh timers (spec 5.7)."""
        self.running = True
        for session in self.sessions.values():
            self._arm(session)

    def reload_task_ids(self, pk: str) -> set[str]:
        """Task ids of live sessions in which `pk` is still assigned (spec 5.3 reload)."""
        if self._v0723:
            return set()  # the partial last page of 100 is dropped: nothing below 100 rows
        return {
            task_id
            for task_id, s in self.sessions.items()
            if pk in s.rollers and s.rollers[pk].status == ROLLER_ASSIGNED
        }

    def _release(self, pk: str, task_id: str, verified: bool) -> None:
        """Free the key's claim on the task; 2023-07 frees only on a verified proof."""
        if verified or not self._v0723:
            self.pool.free_task(pk, task_id)

    def _assigned_ever(self, pk: str, task_id: str) -> bool:
        """2023-07's prover_task lookup: was the task ever dispatched to `pk`?"""
        task = self.book.get(task_id)
        return task is not None and any(
            to["pk"] == pk for d in task.dispatches for to in d["to"])

    def _update_active(self) -> None:
        self.metrics.set_gauge("coordinator/sessions/active/number", len(self.sessions))

    # -- results (spec 2.3, 5.6) ----------------------------------------------------

    def _record(self, task_id: str, entry: dict[str, Any]) -> None:
        task = self.book.get(task_id)
        (task.submissions if task is not None else self.unmatched_submissions).append(entry)

    async def submit(self, pk: str, detail: ProofDetail) -> None:
        """roller_submitProof after the signature check: steps 2-6 of spec 2.3."""
        node = self.pool.get(pk)
        entry: dict[str, Any] = {
            "at": time.time(),
            "pk": pk,
            "name": node.name if node else None,
            "task_id": detail.id,
            "type": detail.type,
            "status": detail.status,
            "error": detail.error,
            "valid": None,
            "outcome": None,
            "rejection": None,
        }
        try:
            await self._submit(pk, detail, entry)
        except Exception as exc:
            entry["outcome"] = "rejected"
            entry["rejection"] = str(exc)
            raise
        finally:
            self._record(detail.id, entry)

    async def _submit(self, pk: str, detail: ProofDetail, entry: dict[str, Any]) -> None:
        task_id = detail.id
        if self._v0723:
            if not self._assigned_ever(pk, task_id):
                raise method_error("validator failure get none prover task for the proof")
            live = self.sessions.get(task_id)
            if live is None or pk not in live.rollers:
                # Its session ended (timed out, verified, failed or re-dispatched): Go
                # stores a proof and marks the task proved, but records no verification.
                task = self.book.get(task_id)
                if detail.status == 0 and task is not None and task.state != VERIFIED:
                    task.state = PROVED
                entry["outcome"] = "late_unverified" if detail.status == 0 else "late"
                return
        elif not self.pool.holds(pk, task_id):
            raise method_error(
                f"the roller or session id doesn't exist, pubkey: {pk}, ID: {task_id}"
            )
        self.metrics.roller_set(pk, "roller/proofs/last/finished/timestamp", time.time())
        session = self.sessions.get(task_id)
        if session is None:
            raise method_error(f"proof generation session for id {task_id} does not existID")
        status = session.rollers.get(pk)
        if status is None:
            node = self.pool.get(pk)
            name = node.name if node else ""
            raise method_error(
                f"roller {name} {prove_type_name(session.task.type)} ({pk}) is not eligible "
                f"to partake in proof session {task_id}"
            )
        if status.status == ROLLER_VALID:
            entry["outcome"] = "already_valid"
            self.pool.free_task(pk, task_id)
            return
        task = session.task
        proof_time = time.time() - session.created_at
        if detail.status != 0:
            self.metrics.observe("coordinator/proofs/generated/failed/time", proof_time)
            self.metrics.observe("roller/proofs/generated/failed/time", proof_time, pk)
            entry["outcome"] = "failed"
            log.info("proof failed by roller task_id=%s pk=%s error=%s", task_id, pk,
                     detail.error)
            self._on_result(session, pk, ROLLER_INVALID)
            self._release(pk, task_id, verified=False)
            return
        # The Go coordinator updates the task row of the type the roller claims (msg.Type).
        same_type = detail.type == task.type
        if same_type:
            task.state = PROVED
        self.metrics.inc("coordinator/proofs/received/total")
        verdict = await self._verify(task, detail)
        valid = verdict.valid
        entry["valid"] = valid
        if not valid:
            entry["reason"] = verdict.reason
        entry["outcome"] = "valid" if valid else "invalid"
        if valid:
            self.metrics.observe("coordinator/proofs/verified/success/time", proof_time)
            self.metrics.observe("roller/proofs/verified/success/time", proof_time, pk)
            if same_type:
                task.state = VERIFIED
                task.proof = detail.proof
        else:
            self.metrics.observe("coordinator/proofs/verified/failed/time", proof_time)
            self.metrics.observe("roller/proofs/verified/failed/time", proof_time, pk)
        log.info("proof verified task_id=%s pk=%s valid=%s reason=%r", task_id, pk, valid,
                 verdict.reason)
        if self.sessions.get(task_id) is session:
            self._on_result(session, pk, ROLLER_VALID if valid else ROLLER_INVALID)
        self._release(pk, task_id, verified=valid)
        if valid and same_type:
            batch = self.book.on_verified(task)
            if batch is not None:
                log.info("batch task created task_id=%s chunks=%d", batch.id,
                         len(batch.sub_proofs))

    async def _verify(self, task: TaskRecord, detail: ProofDetail) -> Verdict:
        """The verifier's verdict on `detail` as a proof of `task` (what the task determines)."""
        if self.config.submit_delay > 0:
            await asyncio.sleep(self.config.submit_delay)
        proof = detail.proof
        if proof is None:
            # The Go mock verifier dereferences nil here and crashes; the devnet says invalid.
            log.warning("proof rejected reason=null_proof_with_status_ok task_id=%s", detail.id)
            return Verdict(False, "null proof with status ok")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self.verifier.verify, task, proof)
        except Exception as exc:
            log.exception("verifier crashed task_id=%s", detail.id)
            return Verdict(False, f"verifier crashed: {exc}")

    def _on_result(self, session: Session, pk: str, status: int) -> None:
        """The session collector's result branch: record, maybe fail, maybe finish."""
        session.rollers[pk].status = status
        task = session.task
        if all(r.status == ROLLER_INVALID for r in session.rollers.values()):
            task.state = FAILED
            self.metrics.inc("coordinator/sessions/failed/total")
        finished = all(r.status != ROLLER_ASSIGNED for r in session.rollers.values())
        if finished and any(r.status == ROLLER_VALID for r in session.rollers.values()):
            for other, result in session.rollers.items():
                self._release(other, task.id, verified=result.status == ROLLER_VALID)
            if session.timer is not None:
                session.timer.cancel()
            del self.sessions[task.id]
            self.metrics.inc("coordinator/sessions/success/total")
            self._update_active()
            return
        self._arm(session)
