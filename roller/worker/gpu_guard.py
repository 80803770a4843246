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
  GPU it fails by itself; a proof from a GPU with memory errors is checked by the
  coordinator's verifier like any other.

Failure model: nothing here stops a worker for a reading it cannot take. A sampler error is
logged and the next period tried again; only the start check exits.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import signals

from roller.config import process_config
from roller.errors import RollerError
from roller.ledger import TaskLedger
from roller.logs import kv
from roller.observe import gpu, metrics
from roller.observe.gpu import GpuRef, GpuSample, Nvml

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 5.0  # NVML's utilisation is a ~1 s figure; Prometheus scrapes every 15 s


class GpuGuard:
    """Samples a worker's GPUs into the metrics and fences the worker on a failing one.

    `stop_consuming` cancels the worker's queues (injected: Celery's consumer in a worker,
    a recorder in tests); it is called at most once."""

    def __init__(self, nvml: Nvml, refs: list[GpuRef], worker: str, queues: list[str],
                 stop_consuming: Callable[[list[str]], None]) -> None:
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

    def fence(self, ref: GpuRef, code: str, why: str) -> None:
        if self.fenced is not None:
            return
        self.fenced = (code, why)
        log.error("GPU fenced, the worker stops taking jobs: %s %s", why,
                  kv(worker=self.worker, queues=",".join(self.queues), gpu=ref.index,
                     uuid=ref.uuid, reason=code))
        metrics.GPU_FENCED.labels(*self._labels(ref), code).set(1)
        for queue in self.queues:
            metrics.WORKER_CONSUMING.labels(self.worker, queue).set(0)
        self.stop_consuming(list(self.queues))

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
_guard: GpuGuard | None = None


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
           ) -> Callable[[list[str]], None]:
    """Stop consuming, then tell the listener (the queues' slots stop asking for work)."""

    def fence(queues: list[str]) -> None:
        stop(queues)
        if ledger is None:
            return
        for queue in queues:
            try:
                ledger.fence(queue, "GPU fenced by its worker (see its log, roller_gpu_fenced)")
            except redis.RedisError as exc:
                log.warning("cannot tell the listener of the fence %s",
                            kv(queue=queue, error=exc))

    return fence


@signals.worker_ready.connect
def start_sampler(sender: Any = None, **_: Any) -> None:
    """Every worker, GPU view or not: its queues as consumed (RollerQueueWithoutWorker);
    with NVML, its GPUs read now and then every SAMPLE_SECONDS."""
    global _guard
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
    if _nvml is None or not _refs:
        return
    guard = GpuGuard(_nvml, _refs, worker, queues, fencer(consumer_stopper(sender), ledger))
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
