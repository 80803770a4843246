"""One proving job: task record -> traces or sub-proofs -> prover -> outbox.

Task types (roller numbering): 0 chunk (block traces), 1 batch (chunk proofs), 2 bundle (batch
proofs; HTTP generations H3+). A batch slot proves batches and bundles (spec 5.1: the batch prover
type covers both). Sub-proofs are the TaskMsg's (an HTTP task's `chunk_proofs` / `batch_proofs`
are put there when the listener records it).

The Celery binding lives in roller.tasks; this module holds the logic with its
collaborators passed in, so the orchestration can be unit-tested with a mock prover.
A job ends at "answer stored": the listener, which holds the keys and the coordinator
session, delivers it. Failure model: the job takes the task's lease as soon as it has the
message and holds it through warm-up, trace fetch and proof (roller.lifecycle: a record
without a renewed lease is dead and re-driven, whatever kombu still holds); a message whose
drive number is not the record's is stale (the record was re-driven since) and is
acknowledged without proving. Attempts are counted under the lease before proving, so a
crash still counts and a poison task ends as a failure report after the attempt budget. A
job whose lease ran out takes it back if nobody else did; if another attempt holds the task
it stores nothing. A proof finished during a Redis outage waits in memory for the ledger; a
job that raises leaves its record in `proving` without a lease, which the listener's
reconciliation re-drives. A transient L2 failure (node down, 5xx, null trace) is retried
inside the trace fetch for `retry.trace_budget_seconds`, never past the task's session
window, before `get traces failed` is reported (each report spends one of the coordinator's
attempts at the task). Every failure answer is classed (roller.lifecycle.failures): a
deterministic one (task data that is not prover input, input the prover refuses) is also
remembered for the slot's identity, so that the listener answers the task's re-assignments
without a job. What happens is told to the process's observers (ctx.events: the metrics).

Check before store: a GPU can compute a wrong proof with no error anywhere (silent data
corruption), and a proof the coordinator refuses costs the task one of its attempts there.
So every proof is verified against its task before it is stored (`_check`, under the task's
fork): a chunk proof against the chunk info of the very traces it proved, a batch proof
against the ordered chunk infos of its chunk proofs, a bundle proof against the ordered batch
infos of its batch proofs. A proof that fails is never stored: it is logged (WARNING), told
to the observers (SelfCheckFailed) and proved again on the same GPU, within the attempt
budget left to the job (`retry.max_prove_attempts` and `retry.max_task_attempts`, less the
attempts the ledger counted before this one; a failed check is no crash and the ledger's
count is not moved); when every proof failed, the answer is the transient report
`proof failed its own check: <the last rejection>`. A run of failing proofs fences the GPU
(roller.worker.gpu_guard, SelfCheckStreak). A check that cannot run (the verifier does not
load, the task's infos cannot be rebuilt) says nothing about the proof: it is stored
unchecked, with a WARNING, and the coordinator's verifier still judges it. The seed ABI is
not checked: its verifier takes no task, and its init aborts the process on a bad key, which
would turn a check into a crash counted against the task.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import redis

from roller.config import RollerConfig, proof_kind
from roller.errors import (
    ForkNotHeld,
    ProverError,
    RollerError,
    TraceFetchError,
    TraceMismatch,
)
from roller.ffi import Prover
from roller.ffi.native import SeedProver, batch_info_of_instance, chunk_info_of_instance
from roller.forks import fork_to_prove
from roller.ledger import Attempt, Moved, TaskLedger, TaskRecord, TaskState
from roller.lifecycle import LEASE_RENEW_SECONDS, LEASE_SECONDS, Budget, Observers, Window
from roller.lifecycle.events import (
    AttemptEnded,
    ProvingEnded,
    ProvingStarted,
    SelfCheckFailed,
    TraceRetried,
    TracesFetched,
    TracesRecovered,
    timed,
)
from roller.lifecycle.failures import TRACES_FAILED, classify, failure
from roller.logs import kv
from roller.protocol.batch_header import check_batch_task
from roller.protocol.http_messages import task_data_error
from roller.protocol.messages import (
    AggProof,
    FailureClass,
    ProofDetail,
    ProveType,
    RespStatus,
)
from roller.worker.gpu_guard import SelfCheckStreak
from roller.worker.trace_client import Retry, TraceClient
from roller.worker.trace_prefetch import TracePrefetcher

log = logging.getLogger(__name__)

# How long a finished proof waits in memory for the ledger (Redis) to come back.
STORE_PATIENCE_SECONDS = 600
PROVABLE = frozenset({TaskState.RECEIVED, TaskState.QUEUED, TaskState.PROVING})
# The answer when every proof of the job failed its own check (transient: another GPU, or
# this one after a reset, proves the task).
SELF_CHECK_FAILED = "proof failed its own check"


class JobOutcome(StrEnum):
    STORED = "stored"  # the answer (proof or failure report) is in the outbox
    EXPIRED = "expired"
    ALREADY_DONE = "already done"
    DUPLICATE = "duplicate delivery"
    STALE = "stale message"  # the record was re-driven after this message was sent
    LEASE_LOST = "lease lost"  # another attempt took the task over: nothing stored
    UNKNOWN_TASK = "unknown task"


@dataclass
class JobContext:
    cfg: RollerConfig
    ledger: TaskLedger
    prover: Prover
    traces: TraceClient
    worker: str
    on_proved: Callable[[str, ProofDetail, float], None] | None = None
    # Several identities on this worker's queue: the next job's traces, fetched ahead.
    prefetch: TracePrefetcher | None = None
    # Makes the prover ready (warm-up: circuits, parameters), called under the task's lease
    # so that a long first warm-up never looks like a dead worker; raises WorkerUnusable.
    ready: Callable[[], None] | None = None
    # The process's observers of lifecycle events (the worker's metrics).
    events: Observers = field(default_factory=Observers)
    # This process's run of proofs failing their own check, and the GPU's fence it calls for
    # (roller.worker.gpu_guard.self_check_fencer; None: nothing to fence, it is only logged).
    self_checks: SelfCheckStreak = field(default_factory=SelfCheckStreak)
    fence: Callable[[str], None] | None = None


class _LeaseKeeper:
    """Renews the task lease while the job runs (the listener's proof of life, see
    roller.lifecycle). A renewal that finds the lease gone (a Redis outage longer than its
    TTL, a frozen process) takes it back if the record is still this attempt's; if another
    attempt holds the task, `lost` is set and renewal stops: the job stores nothing."""

    def __init__(self, ledger: TaskLedger, slot: str, task_id: str, owner: str) -> None:
        self.args = (slot, task_id, owner)
        self.ledger = ledger
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="lease")

    def _run(self) -> None:
        slot, task_id, _ = self.args
        while not self.stop.wait(LEASE_RENEW_SECONDS):
            try:
                kept = self.ledger.retake_lease(*self.args, LEASE_SECONDS)
            except redis.RedisError as exc:
                log.warning("lease renewal failed %s", kv(task_id=task_id, slot=slot, error=exc))
                continue
            if kept == 2:
                log.warning("lease had run out and was taken back %s",
                            kv(task_id=task_id, slot=slot))
            elif not kept:
                log.warning("lease lost to another attempt, this one will store nothing %s",
                            kv(task_id=task_id, slot=slot))
                self.lost.set()
                return

    def __enter__(self) -> _LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            self.ledger.release_lease(*self.args)
        except redis.RedisError as err:  # the lease expires on its own within LEASE_SECONDS
            log.warning("lease release failed %s", kv(task_id=self.args[1], error=err))


def _acquire_lease(ctx: JobContext, slot: str, task_id: str, owner: str) -> bool:
    """Take the lease; a lease left by a killed job expires within LEASE_SECONDS, so wait it out."""
    deadline = time.monotonic() + LEASE_SECONDS + 5
    while not ctx.ledger.acquire_lease(slot, task_id, owner, LEASE_SECONDS):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def _prove(ctx: JobContext, rec: TaskRecord, max_proofs: int = 1) -> ProofDetail:
    """The task's answer; `max_proofs`: how many proofs the job may make (a proof failing its
    own check is proved again)."""
    task = rec.task
    fields = kv(task_id=task.id, slot=rec.slot)
    undecodable = task_data_error(task) if not (task.block_hashes or task.sub_proofs) else None
    if undecodable is not None:
        # The coordinator served task data that is not prover input (sub-proofs in another
        # shape, bad block hashes; the session kept the task so that it is answered):
        # nothing to fetch or prove.
        log.error("task data is not prover input %s error=%r", fields, undecodable)
        return failure(task, FailureClass.DETERMINISTIC, undecodable)
    try:
        fork = _fork(ctx, rec)
    except ForkNotHeld as exc:
        # The listener answers such a task without a job; this is the worker's own check, for
        # a record made before the config changed. Never proved under another fork's rules.
        log.error("hard fork not held %s error=%r", fields, str(exc))
        return failure(task, FailureClass.DETERMINISTIC, str(exc))
    fields = f"{fields} fork={fork}"
    if task.type == ProveType.BASIC:
        traces_json = ctx.prefetch.take(rec) if ctx.prefetch is not None else None
        try:
            with timed(lambda s: ctx.events.emit(TracesFetched(rec.slot, s))):
                if traces_json is None:
                    traces_json = _fetch_traces(ctx, rec)
        except TraceMismatch as exc:
            # The node answered other blocks than asked: never prove them; the report names
            # the block (the text is ours: hashes and numbers, no endpoint). Transient: a
            # lagging node serves the right blocks later.
            log.error("trace mismatch %s error=%r", fields, str(exc))
            return failure(task, classify(exc), f"{TRACES_FAILED}: {exc}")
        except TraceFetchError as exc:
            log.error("trace fetch failed %s error=%r", fields, str(exc))
            return failure(task, classify(exc), TRACES_FAILED)
        log.info("proving chunk %s blocks=%d", fields, len(task.block_hashes))
        prove: Callable[[str, str], str] = ctx.prover.gen_chunk_proof
        payload = traces_json
    else:
        bundle = task.type == ProveType.BUNDLE
        proofs = task.sub_proofs
        try:
            check_batch_task(task, fork)  # H3+ codec v3/v4: the coordinator's batch header
        except RollerError as exc:
            # A header that disagrees with the chunk proofs or the blob (WireFormatError:
            # deterministic) is never proved; a KZG setup that cannot load is transient.
            log.error("batch header refused %s error=%r", fields, str(exc))
            return failure(task, classify(exc), str(exc))
        log.info("proving %s %s %s=%d", proof_kind(task.type), fields,
                 "batches" if bundle else "chunks", len(proofs))
        prove = ctx.prover.gen_bundle_proof if bundle else ctx.prover.gen_batch_proof
        payload = json.dumps([p.to_json() for p in proofs])
    if ctx.prefetch is not None:
        ctx.prefetch.ahead_of(rec)  # while this one proves
    try:
        ctx.ledger.note(rec.slot, task.id, prove_started_at=time.time(), fork=fork)
    except redis.RedisError as exc:  # a status hint only: a Redis blip must not cost a proof
        log.warning("cannot record the proof start %s error=%r", fields, str(exc))
    try:
        return _prove_checked(ctx, rec, fork, lambda: prove(payload, fork),
                              lambda: _task_infos(ctx, rec, fork, payload), max_proofs)
    finally:
        if ctx.prefetch is not None:
            ctx.prefetch.proved()


def _prove_checked(ctx: JobContext, rec: TaskRecord, fork: str, prove: Callable[[], str],
                   infos_of: Callable[[], str | None], proofs: int) -> ProofDetail:
    """Prove, check the proof against its task (`infos_of`: what the task determines, None:
    unchecked; asked once, after a first proof, so that input the prover refuses is reported
    as such), prove again while it fails and `proofs` allows (the module's "Check before
    store")."""
    task = rec.task
    fields = kv(task_id=task.id, slot=rec.slot, fork=fork)
    rejection = ""
    infos: list[str | None] = []
    for made in range(1, proofs + 1):
        try:
            proof = AggProof.from_json(json.loads(prove()))
        except (ValueError, RollerError) as exc:
            # A ProverError is classed by its message (roller.lifecycle.failures); output that
            # is not a proof (a ValueError, or a WireFormatError of the decoder) is the
            # prover's fault.
            failure_class = (classify(exc) if isinstance(exc, ProverError)
                             else FailureClass.TRANSIENT)
            log.error("prover error %s failure_class=%s error=%r", fields, failure_class,
                      str(exc))
            return failure(task, failure_class, str(exc) or "unexpected end of JSON input")
        if not infos:
            infos.append(infos_of())
        found = _check(ctx, rec, fork, proof, infos[0])
        if found is None:
            return ProofDetail(id=task.id, type=task.type, status=RespStatus.OK, proof=proof,
                               error="")
        rejection = found
        ctx.events.emit(SelfCheckFailed(rec.slot, task.type, fork))
        log.warning("proof failed its own check, not stored %s proof=%d of=%d reason=%r",
                    fields, made, proofs, rejection)
        if ctx.self_checks.failed(task.id):
            _fence(ctx, rec, fork, rejection)
            break  # a fenced GPU proves no more: another one gets the task sooner
        if made < proofs:
            log.info("proving again on the same GPU %s proof=%d of=%d", fields, made + 1,
                     proofs)
    log.error("no proof passed its own check, failure reported %s", fields)
    return failure(task, FailureClass.TRANSIENT, f"{SELF_CHECK_FAILED}: {rejection}")


def _fence(ctx: JobContext, rec: TaskRecord, fork: str, rejection: str) -> None:
    streak = ctx.self_checks
    why = (f"{streak.failures} consecutive proofs over {len(streak.tasks)} tasks failed "
           f"their own check (last: {rejection})")
    log.error("GPU producing proofs that fail their own check, fencing it %s failures=%d "
              "tasks=%d", kv(task_id=rec.task.id, slot=rec.slot, fork=fork),
              streak.failures, len(streak.tasks))
    if ctx.fence is not None:
        ctx.fence(why)


def _task_infos(ctx: JobContext, rec: TaskRecord, fork: str, payload: str) -> str | None:
    """What the task determines, for the proof's check (JSON): the chunk info of the traces
    proved (`payload`), or the ordered chunk / batch infos of the sub-proofs. None: the
    proof goes unchecked (the seed ABI, or infos that cannot be rebuilt: the module's
    docstring)."""
    task = rec.task
    if isinstance(ctx.prover, SeedProver):
        if not _SEED_SAID:
            _SEED_SAID.append(True)
            log.info("proofs not checked before store: the seed ABI's verifier takes no task")
        return None
    try:
        if task.type == ProveType.BASIC:
            chunk_info = getattr(ctx.prover, "chunk_info", None)
            if chunk_info is None:
                # A prover without chunk infos (the mock) checks the block count only.
                return json.dumps({"block_count": len(json.loads(payload))})
            return json.dumps(chunk_info(payload, fork=fork))
        info_of = (batch_info_of_instance if task.type == ProveType.BUNDLE
                   else chunk_info_of_instance)
        return json.dumps([info_of(p.instance, p.block_count) for p in task.sub_proofs])
    except (ValueError, RollerError) as exc:
        log.warning("proof check unavailable, proof stored unchecked %s error=%r",
                    kv(task_id=task.id, slot=rec.slot, fork=fork), str(exc))
        return None


_SEED_SAID: list[bool] = []  # said once per process
# The verifier of each task type (the Prover's verify_<kind>_proof).
_CHECKS: dict[int, str] = {ProveType.BASIC: "chunk", ProveType.AGGREGATOR: "batch",
                           ProveType.BUNDLE: "bundle"}


def _check(ctx: JobContext, rec: TaskRecord, fork: str, proof: AggProof, infos: str | None
           ) -> str | None:
    """Why the proof is not a proof of its task, or None (passed, or no check: then the
    GPU's run of failures is left as it is)."""
    if infos is None:
        return None
    kind = _CHECKS[rec.task.type]
    fields = kv(task_id=rec.task.id, slot=rec.slot, fork=fork)
    text = proof.dumps()  # what would be stored and submitted, not the prover's own text
    started = time.monotonic()
    try:
        rejection_of = getattr(ctx.prover, f"{kind}_proof_rejection", None)
        if rejection_of is not None:
            rejection: str | None = rejection_of(text, infos, fork)
        else:  # the Prover protocol's verdict, without a reason
            verify = getattr(ctx.prover, f"verify_{kind}_proof")
            rejection = None if verify(text, infos, fork) else "proof does not verify"
    except RollerError as exc:
        log.warning("proof check unavailable, proof stored unchecked %s error=%r", fields,
                    str(exc))
        return None
    if rejection is None:
        ctx.self_checks.passed()
        log.info("proof passed its own check %s check_s=%.3f", fields,
                 time.monotonic() - started)
    return rejection


def _fork(ctx: JobContext, rec: TaskRecord) -> str:
    """The held hard fork to prove the task under (roller.forks); ForkNotHeld if none."""
    return fork_to_prove(rec.task.http_task, ctx.cfg.prover.fork_names,
                         ctx.cfg.coordinator.hard_fork_name)


def _fork_label(ctx: JobContext, rec: TaskRecord) -> str:
    """The fork for the attempt's metric: "" for a task of a fork not held (not proved)."""
    try:
        return _fork(ctx, rec)
    except ForkNotHeld:
        return ""


def _fetch_traces(ctx: JobContext, rec: TaskRecord) -> str:
    """The chunk's traces. Transient L2 failures are retried inside the fetch
    (roller.worker.trace_client) until `retry.trace_budget_seconds` or the task's session
    window runs out, whichever is sooner: past the window the coordinator takes no answer, so
    waiting longer would only hold the GPU. Each retry is logged and told to the observers
    (TraceRetried); a fetch that succeeded after retries is told too (TracesRecovered): each
    one a `get traces failed` report, and a coordinator attempt at the task, saved."""
    retries = 0

    def retried(retry: Retry) -> None:
        nonlocal retries
        retries += 1
        log.warning("trace fetch retry %s", kv(task_id=rec.task.id, slot=rec.slot,
                                               attempt=retry.attempt,
                                               delay=f"{retry.delay:.1f}s",
                                               reason=retry.reason, error=retry.error))
        ctx.events.emit(TraceRetried(rec.slot, retry.reason))

    window_left = rec.received_at + ctx.cfg.window_seconds - time.time()
    traces_json = ctx.traces.get_traces_json(list(rec.task.block_hashes),
                                             seconds_left=window_left, on_retry=retried)
    if retries:
        log.info("traces fetched after retries %s",
                 kv(task_id=rec.task.id, slot=rec.slot, retries=retries))
        ctx.events.emit(TracesRecovered(rec.slot, retries))
    return traces_json


def _dump(dump_dir: Path, detail: ProofDetail) -> None:
    if detail.proof is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / detail.id).write_text(json.dumps(detail.proof.to_json()))


def run_job(ctx: JobContext, slot: str, task_id: str, queue: str = "", drive: int = 0
            ) -> JobOutcome:
    """Prove one task for `slot` from its job message (`drive`: the message's drive number,
    0 for messages of releases before drives) and store the answer."""
    rec = ctx.ledger.get(slot, task_id)
    fields = kv(task_id=task_id, slot=slot)
    if rec is None:
        # Retention removed it, or the job outlived its record: nothing is left to answer.
        log.error("job for a task with no record, dropped %s", fields)
        return JobOutcome.UNKNOWN_TASK
    if rec.state not in PROVABLE:
        log.info("task already answered, nothing to do %s state=%s", fields, rec.state)
        return JobOutcome.ALREADY_DONE
    if drive != rec.drive:
        # A dead worker's message that kombu gave back after the record was re-driven: the
        # record's current message (or the attempt it started) answers the task.
        log.info("stale job message acknowledged without proving %s drive=%d current=%d",
                 fields, drive, rec.drive)
        return JobOutcome.STALE
    window = Window(ctx.cfg.window_seconds, ctx.events)
    if window.passed(rec.received_at):
        window.expire(ctx.ledger, slot, task_id, rec.task.type, rec.received_at, "job")
        return JobOutcome.EXPIRED
    owner = f"{ctx.worker}:{time.time()}"
    if not _acquire_lease(ctx, slot, task_id, owner):
        log.warning("another job is proving this task, duplicate delivery ignored %s", fields)
        return JobOutcome.DUPLICATE
    with _LeaseKeeper(ctx.ledger, slot, task_id, owner) as lease:
        if ctx.ready is not None:
            ctx.ready()
        attempt = ctx.ledger.start_attempt(slot, task_id, owner, ctx.worker, queue)
        if not attempt.started:
            # Between our read and the lease another job stored the answer (or the window
            # closed the record): this copy has nothing left to do.
            log.info("task already answered, nothing to do %s state=%s", fields, attempt.state)
            return JobOutcome.ALREADY_DONE
        return _prove_and_store(ctx, rec, queue, attempt, owner, lease.lost)


def _prove_and_store(ctx: JobContext, rec: TaskRecord, queue: str, attempt: Attempt,
                     owner: str, lost: threading.Event) -> JobOutcome:
    fields = kv(task_id=rec.task.id, slot=rec.slot, attempt=attempt.attempts,
                assignment=rec.assignment, worker=ctx.worker)
    started = time.monotonic()
    spent = Budget(ctx.cfg.retry).at_attempt(rec.task, attempt)
    if spent is not None:
        # Every earlier attempt of this task died with its process (roller.lifecycle.budget).
        log.error("giving up after %d started attempts (%d for this task id) %s",
                  attempt.attempts - 1, attempt.total_attempts - 1, fields)
        detail, outcome = spent, "poison"
    else:
        log.info("job started %s", fields)
        with ctx.events.during(ProvingStarted(rec.slot), ProvingEnded(rec.slot)):
            detail = _prove(ctx, rec, _proofs_left(ctx.cfg.retry.max_prove_attempts,
                                                   ctx.cfg.retry.max_task_attempts, attempt))
        outcome = "proved" if detail.status == 0 else "prover_error"
    seconds = time.monotonic() - started
    ctx.events.emit(AttemptEnded(rec.task.type, outcome, attempt.attempts,
                                 seconds if detail.status == 0 else None,
                                 _fork_label(ctx, rec) if outcome != "poison" else ""))
    if lost.is_set():
        log.warning("answer not stored: another attempt holds the task %s", fields)
        return JobOutcome.LEASE_LOST
    stored = _store(ctx, rec.slot, detail, seconds if detail.status == 0 else None, owner)
    if not stored.ok:
        log.warning("answer not stored: the record moved on or another attempt holds it %s "
                    "state=%s", fields, stored.state)
        return JobOutcome.LEASE_LOST if stored.state == TaskState.PROVING \
            else JobOutcome.ALREADY_DONE
    log.info("proof stored in outbox %s status=%d prove_s=%.2f", fields, detail.status, seconds)
    if detail.failure_class is FailureClass.DETERMINISTIC:
        _remember_unprovable(ctx, rec.slot, detail)
    if ctx.cfg.prover.dump_dir is not None:
        _dump(ctx.cfg.prover.dump_dir, detail)
    if ctx.on_proved is not None:
        ctx.on_proved(rec.slot, detail, seconds)
    return JobOutcome.STORED


def _proofs_left(max_prove: int, max_task: int, attempt: Attempt) -> int:
    """How many proofs this attempt may make: the attempt itself, plus what is left of both
    budgets (roller.lifecycle.budget) for proofs that fail their own check."""
    return 1 + max(0, min(max_prove - attempt.attempts, max_task - attempt.total_attempts))


def _remember_unprovable(ctx: JobContext, slot: str, detail: ProofDetail) -> None:
    """This identity cannot prove the task: its next assignments are answered with the same
    report by the listener, with no job (roller.ledger, UNPROVABLE_TTL_SECONDS). Best
    effort: without the mark the next assignment is proved and fails again, one attempt."""
    try:
        ctx.ledger.remember_unprovable(slot, detail.id, detail.error)
    except redis.RedisError as exc:
        log.warning("cannot remember the task as unprovable %s error=%r",
                    kv(task_id=detail.id, slot=slot), str(exc))
        return
    log.info("task remembered as unprovable by this identity %s reason=%r",
             kv(task_id=detail.id, slot=slot), detail.error)


def _store(ctx: JobContext, slot: str, detail: ProofDetail, seconds: float | None,
           owner: str) -> Moved:
    """Store the answer, waiting out a Redis outage: failing the job here would throw the
    proof away and prove the task again."""
    deadline = time.monotonic() + STORE_PATIENCE_SECONDS
    while True:
        try:
            return ctx.ledger.store_proof(slot, detail, seconds, owner=owner)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("ledger unavailable, proof kept in memory %s error=%r",
                        kv(task_id=detail.id, slot=slot), str(exc))
            time.sleep(2)
