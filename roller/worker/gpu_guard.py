"""A worker's GPUs: the start check, their readings as metrics, and fencing a failing GPU.

- Start (`check`, called by roller.worker.boot in `celeryd_init`, before the broker): map
  `CUDA_VISIBLE_DEVICES` to NVML's devices (roller.observe.gpu). An index or UUID NVML does
  not enumerate ends the worker like a prover that does not load: one line, exit 3. Without
  NVML (no `nvidia-ml-py`, no driver: a CPU host) there is no GPU view, one INFO line, and
  the worker starts as before.
- `worker_ready` (the consumer has subscribed, its event loop has not fetched yet): the
  `roller_worker_consuming` series of the worker's queues (every worker, GPU view or not);
  with a GPU view, one reading of each GPU (a GPU already failing is fenced before the first
  job arrives), then a sampler thread reading them every SAMPLE_SECONDS into `roller_gpu_*`.
- Fencing: a GPU fallen off the bus, with uncorrectable ECC errors since its last reset, or a
  failed row remapping (`GpuSample.fence_reason`) makes the worker cancel its queues (Celery's
  own `cancel_task_queue`, scheduled on the consumer's event loop: it is not thread-safe) and
  say why in one ERROR line. It is sticky: the worker stays up, idle, exporting
  `roller_gpu_fenced` for the alert, until an operator resets the GPU and restarts it
  (README "Watching it", RollerGpuFenced). A proof already running is left alone: on a lost
  GPU it fails by itself; a proof from a GPU with memory errors is checked by the worker
  before it is stored (roller.worker.job) and by the coordinator's verifier.
- Fencing on the GPU's output (`SelfCheckStreak`): NVML does not see every fault (silent
  data corruption: a proof computed wrong, with no ECC event). The job checks each proof
  against its task before storing it; SELF_CHECK_FENCE_AFTER consecutive proofs of this
  worker process failing that check, over at least two different tasks, fence the worker the
  same way (reason `self_check`). The job runs in a pool process, the consumer lives in the
  worker's parent: the pool process writes the listener's fence key itself
  (`self_check_fencer`) and asks its parent, through Celery's remote control addressed to
  this worker only (`roller_fence_self_check`), to cancel its queues.

Failure model: nothing here stops a worker for a reading it cannot take. A sampler error is
logged and the next period tried again; only the start check exits. A self-check fence whose
remote-control message is lost (a broker outage) still has the listener's fence key: the
queue gets no new work, and the next failing proof asks again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import current_task, signals
from celery.worker.control import control_command

from roller.config import process_config
from roller.errors import RollerError
from roller.ledger import TaskLedger
from roller.logs import kv
from roller.observe import gpu, metrics
from roller.observe.gpu import GpuRef, GpuSample, Nvml

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0  # NVML's utilisation is a ~1 s figure; Prometheus scrapes every 15 s
# What the listener is told (the fence key's value, `roller status`), by cause.
GPU_FENCE_NOTE = "GPU fenced by its worker (see its log, roller_gpu_fenced)"
SELF_CHECK_FENCE_NOTE = "proofs failing their own check"
FENCE_SELF_CHECK = "self_check"  # roller_gpu_fenced's reason beside NVML's (roller.observe.gpu)
# Consecutive proofs failing their own check that fence the worker, when they span two tasks
# or more. Not 1: one silent corruption is a rare event a re-proof fixes (the job proves
# again); three in a row, over two inputs, with no good proof between them, is a GPU that
# keeps computing wrong. Two tasks at least: a task whose proof fails on every GPU (a prover
# or verifier bug on that input) spends its own attempt budget (3 proofs by default) and is
# reported, but must not fence every GPU the coordinator hands it to.
SELF_CHECK_FENCE_AFTER = 3
SELF_CHECK_FENCE_TASKS = 2


class SelfCheckStreak:
    """This worker process's run of proofs failing their own check (roller.worker.job):
    `failed` counts one and says, once, when the run calls for the fence; a proof that passes
    ends the run. Per process: a restarted worker (a reset GPU) starts from zero."""

    def __init__(self, after: int = SELF_CHECK_FENCE_AFTER,
                 tasks: int = SELF_CHECK_FENCE_TASKS) -> None:
        self.after = after
        self.min_tasks = tasks
        self.failures = 0
        self.tasks: list[str] = []  # the run's tasks, in order
        self.fenced = False
        self._lock = threading.Lock()

    def passed(self) -> None:
        with self._lock:
            self.failures = 0
            self.tasks = []

    def failed(self, task_id: str) -> bool:
        """Count a failing proof of `task_id`; True the one time the run reaches the fence."""
        with self._lock:
            self.failures += 1
            if task_id not in self.tasks:
                self.tasks.append(task_id)
            if self.fenced or self.failures < self.after or len(self.tasks) < self.min_tasks:
                return False
            self.fenced = True
            return True


class GpuGuard:
    """Samples a worker's GPUs into the metrics and fences the worker on a failing one.

    `stop_consuming(queues, note)` cancels the worker's queues and tells the listener `note`
    (injected: Celery's consumer in a worker, a recorder in tests); it is called at most
    once. Without NVML (`nvml` None, no refs) it samples nothing and only fences (self-check)."""

    def __init__(self, nvml: Nvml | None, refs: list[GpuRef], worker: str, queues: list[str],
                 stop_consuming: Callable[[list[str], str], None]) -> None:
        self.nvml = nvml
        self.refs = list(refs)
        self.worker = worker
        self.queues = list(queues)
        self.stop_consuming = stop_consuming
        self.fenced: tuple[str, str] | None = None  # (code, why) once fenced
        self.stopped = threading.Event()

    def start(self) -> None:
        for queue in self.queues:
            metrics.WORKER_CONSUMING.labels(self.worker, queue).set(1)
        for ref in self.refs:
            metrics.GPU_FENCED.labels(*self._labels(ref), "none").set(0)

    def _labels(self, ref: GpuRef) -> tuple[str, str, str]:
        return self.worker, str(ref.index), ref.uuid

    def poll(self) -> list[GpuSample]:
        """Read every GPU once, export the readings, fence on the first failing one."""
        if self.nvml is None:
            return []
        samples = [self.nvml.sample(ref) for ref in self.refs]
        for sample in samples:
            self._export(sample)
        for sample in samples:
            reason = sample.fence_reason()
            if reason is not None:
                self.fence(sample.ref, *reason)
                break
        return samples

    def _export(self, s: GpuSample) -> None:
        labels = self._labels(s.ref)
        if s.lost:
            metrics.GPU_UTILIZATION.labels(*labels).set(0)  # a lost GPU does no work
            return
        for gauge, value in ((metrics.GPU_UTILIZATION, s.utilization),
                             (metrics.GPU_MEMORY_USED, s.memory_used),
                             (metrics.GPU_MEMORY_TOTAL, s.memory_total),
                             (metrics.GPU_TEMPERATURE, s.temperature),
                             (metrics.GPU_POWER, s.power),
                             (metrics.GPU_ECC_UNCORRECTED, s.ecc_uncorrected),
                             (metrics.GPU_RETIRED_PAGES_PENDING, s.retired_pages_pending),
                             (metrics.GPU_REMAP_PENDING, s.remap_pending)):
            if value is not None:
                gauge.labels(*labels).set(float(value))
        if s.throttle is not None:
            for reason in gpu.THROTTLE_REASONS.values():
                metrics.GPU_THROTTLED.labels(*labels, reason).set(int(reason in s.throttle))

    def fence(self, ref: GpuRef | None, code: str, why: str, note: str = GPU_FENCE_NOTE
              ) -> None:
        """Stop consuming, sticky (`ref` None: a worker without a GPU view)."""
        if self.fenced is not None:
            return
        self.fenced = (code, why)
        where = {} if ref is None else {"gpu": ref.index, "uuid": ref.uuid}
        log.error("GPU fenced, the worker stops taking jobs: %s %s", why,
                  kv(worker=self.worker, queues=",".join(self.queues), **where, reason=code))
        if ref is not None:
            metrics.GPU_FENCED.labels(*self._labels(ref), code).set(1)
        for queue in self.queues:
            metrics.WORKER_CONSUMING.labels(self.worker, queue).set(0)
        self.stop_consuming(list(self.queues), note)

    def fence_self_check(self, why: str) -> None:
        """The worker's proofs keep failing their own check (SelfCheckStreak). Which of a
        worker's GPUs computed them is not known: the series is its first GPU's (one GPU per
        worker in every shipped layout)."""
        self.fence(self.refs[0] if self.refs else None, FENCE_SELF_CHECK, why,
                   SELF_CHECK_FENCE_NOTE)

    def run(self, period: float = SAMPLE_SECONDS) -> None:
        """The sampler thread's loop, until `stopped` is set."""
        while not self.stopped.wait(period):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a reading must never end the worker
                log.warning("GPU reading failed %s", kv(worker=self.worker, error=exc))


# -- the worker's signals --------------------------------------------------------------

_nvml: Nvml | None = None
_refs: list[GpuRef] = []
_guard: GpuGuard | None = None  # the sampling guard (NVML only)
_fence: GpuGuard | None = None  # every worker's fence, GPU view or not (self-check)


def check(visible: str | None, loader: Callable[[], Nvml | None] = gpu.load) -> list[GpuRef]:
    """The start check (module docstring): the worker's GPUs, [] without NVML.

    Raises GpuError for a GPU NVML does not enumerate (boot turns it into exit 3)."""
    global _nvml, _refs
    nvml = loader()
    if nvml is None:
        return []
    refs = nvml.resolve(visible)
    _nvml, _refs = nvml, refs
    for ref in refs:
        log.info("worker GPU %s", kv(cuda_visible_devices=ref.visible, gpu=ref.index,
                                    uuid=ref.uuid, name=ref.name))
    return refs


def consumer_stopper(consumer: Any) -> Callable[[list[str]], None]:
    """Cancel the consumer's queues on its own event loop (its thread), or now when called
    from that thread before the loop runs (worker_ready)."""
    loop_thread = threading.get_ident()

    def stop(queues: list[str]) -> None:
        def cancel() -> None:
            for queue in queues:
                consumer.cancel_task_queue(queue)

        hub = getattr(consumer, "hub", None)
        if threading.get_ident() == loop_thread or hub is None:
            cancel()
        else:
            hub.call_soon(cancel)

    return stop


def _ledger() -> TaskLedger | None:
    try:
        cfg = process_config()
    except RollerError:
        return None  # the worker's start check has reported it
    return TaskLedger.from_url(cfg.broker_url, cfg.retention_seconds)


def fencer(stop: Callable[[list[str]], None], ledger: TaskLedger | None
           ) -> Callable[[list[str], str], None]:
    """Stop consuming, then tell the listener why (the queues' slots stop asking for work)."""

    def fence(queues: list[str], note: str = GPU_FENCE_NOTE) -> None:
        stop(queues)
        if ledger is not None:
            _tell_listener(ledger, queues, note)

    return fence


def _tell_listener(ledger: TaskLedger, queues: list[str], note: str) -> None:
    for queue in queues:
        try:
            ledger.fence(queue, note)
        except redis.RedisError as exc:
            log.warning("cannot tell the listener of the fence %s", kv(queue=queue, error=exc))


def self_check_fencer(ledger: TaskLedger, queues: list[str]) -> Callable[[str], None]:
    """The fence of a pool process whose proofs keep failing their own check (the job calls
    it once, SelfCheckStreak): the listener is told at once (the fence key: the queues'
    slots ask for no more work), and the worker's parent, which owns the consumer, is asked
    to stop consuming (`roller_fence_self_check`, addressed to this worker's name only: two
    workers on one queue fence apart)."""

    def fence(why: str) -> None:
        _tell_listener(ledger, queues, SELF_CHECK_FENCE_NOTE)
        request = getattr(current_task, "request", None)
        hostname = getattr(request, "hostname", None)
        if not hostname:
            log.error("cannot fence: no worker name outside a job %s", kv(why=why))
            return
        try:
            current_task.app.control.broadcast("roller_fence_self_check",
                                               arguments={"why": why},
                                               destination=[hostname])
        except Exception as exc:  # noqa: BLE001 - see the failure model (the key is set)
            log.warning("cannot ask the worker to stop consuming %s",
                        kv(worker=hostname, error=exc))

    return fence


@control_command(args=[("why", str)], signature="<why>")
def roller_fence_self_check(state: Any, why: str = SELF_CHECK_FENCE_NOTE, **_: Any
                            ) -> dict[str, str]:
    """Fence this worker: its proofs keep failing their own check (roller.worker.job).
    Runs in the worker's parent, on the consumer's event loop (Celery's remote control)."""
    if _fence is None:  # before worker_ready: no consumer to stop yet
        log.error("cannot fence before the worker is ready %s", kv(why=why))
        return {"error": "worker not ready"}
    _fence.fence_self_check(why)
    return {"ok": "fenced"}


@signals.worker_ready.connect
def start_sampler(sender: Any = None, **_: Any) -> None:
    """Every worker, GPU view or not: its queues as consumed (RollerQueueWithoutWorker) and
    its fence; with NVML, its GPUs read now and then every SAMPLE_SECONDS."""
    global _guard, _fence
    if sender is None:
        return
    queues = [q.name for q in getattr(sender.task_consumer, "queues", None) or []] or [
        q for q in os.environ.get("ROLLER_WORKER_QUEUES", "").split(",") if q]
    worker = str(sender.hostname)
    for queue in queues:
        metrics.WORKER_CONSUMING.labels(worker, queue).set(1)
    ledger = _ledger()
    if ledger is not None:
        try:
            ledger.unfence(queues)  # started on a healthy GPU (or none): its slots may ask
        except redis.RedisError as exc:
            log.warning("cannot clear the queues' fence %s", kv(worker=worker, error=exc))
    guard = GpuGuard(_nvml, _refs, worker, queues, fencer(consumer_stopper(sender), ledger))
    _fence = guard
    if _nvml is None or not _refs:
        return
    guard.start()
    try:
        guard.poll()  # in the consumer's thread: a failing GPU is fenced before any fetch
    except Exception as exc:  # noqa: BLE001 - see the failure model
        log.warning("GPU reading failed %s", kv(worker=guard.worker, error=exc))
    _guard = guard
    threading.Thread(target=guard.run, daemon=True, name="gpu-sampler").start()


@signals.worker_shutdown.connect
def _stop_sampler(**_: Any) -> None:
    if _guard is not None:
        _guard.stopped.set()
