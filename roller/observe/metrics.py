"""Prometheus metrics of the listener and the workers, and the listener's scrape endpoint.

Every metric here has labels on purpose: a labelled metric creates its value store on the
first `.labels()` call, which in a worker happens in the pool child, after
`roller.observe.worker_metrics` has switched prometheus_client to multiprocess mode (Celery imports
the task modules, and so this one, before any worker signal fires). An unlabelled metric
would bind its store at import time, in single-process mode, and never reach the worker's
endpoint. tests/test_ops_metrics.py checks this rule.

Where each family comes from:
- listener: session state, reconnects, tasks received/deduplicated/re-driven, jobs queued,
  proofs by outcome, submit attempts, end-to-end seconds, and at scrape time from Redis:
  queue depth and outbox size;
- listener at scrape time, for the alert rules (ops/prometheus/roller-alerts.yml): the age of
  each slot's oldest undelivered answer, Redis memory used and its maxmemory;
- workers: proving and trace fetch seconds, trace fetch retries and the fetches they saved,
  proofs failing the worker's own check, attempts per task, slot busy gauge, proofs by
  outcome (prover errors, poison, expired before proving), the queues each worker consumes,
  and, where NVML is present (roller.observe.gpu), its GPUs' readings and fencing.

The workers' gauges written by a worker's parent process (consuming, GPU readings) use a
`live*` multiprocess mode: a worker that dies takes its series with it at the next scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from roller.broker import queue_keys
from roller.config import MetricsConfig, SlotConfig, proof_kind
from roller.ledger import TaskLedger
from roller.lifecycle.events import (
    AnsweredWithoutJob,
    AttemptEnded,
    Deduplicated,
    Delivered,
    Event,
    Expired,
    ProvingEnded,
    ProvingStarted,
    Queued,
    Received,
    Redriven,
    Refused,
    SelfCheckFailed,
    SessionLost,
    SessionUp,
    SubmitTried,
    TokenRenewed,
    TraceRetried,
    TracesFetched,
    TracesRecovered,
)
from roller.logs import kv
from roller.redact import describe

log = logging.getLogger(__name__)

# Proofs run from seconds (CPU devnet, small chunks) to hours (mainnet batches on GPU).
PROVE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200,
                 10800, 14400, 21600, float("inf"))
END_TO_END_BUCKETS = PROVE_BUCKETS
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf"))
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 10, float("inf"))

SESSION_STATES = ("registered", "disconnected")
OUTCOMES = ("accepted", "refused", "prover_error", "poison", "expired")

SESSION_STATE = Gauge("roller_session_state",
                      "1 for the current coordinator session state of each slot",
                      ["slot", "state"])
GENERATION = Gauge("roller_coordinator_generation",
                   "1 for the protocol generation each slot's session speaks (ws-2023-06, "
                   "http-h3, ...), set at each registration or login", ["slot", "generation"])
TOKEN_EXPIRES = Gauge("roller_session_token_expiry_timestamp_seconds",
                      "Unix time the slot's login JWT expires (HTTP generations; 0 when "
                      "there is none)", ["slot"])
RECONNECTS = Counter("roller_session_reconnects",
                     "Coordinator sessions lost and retried, per slot", ["slot"])
TASKS_RECEIVED = Counter("roller_tasks_received",
                         "Task notifications received from the coordinator", ["slot", "type"])
TASKS_DEDUPLICATED = Counter("roller_tasks_deduplicated",
                             "Task notifications already recorded, not enqueued again", ["slot"])
TASKS_ANSWERED_WITHOUT_JOB = Counter(
    "roller_tasks_answered_without_job",
    "Assignments answered at once with a failure report, no job: a task this identity cannot "
    "prove (deterministic) or whose attempt budget it spent (transient)",
    ["slot", "failure_class"])
JOBS_QUEUED = Counter("roller_jobs_queued", "Proving jobs sent to a slot queue", ["queue"])
REDRIVES = Counter("roller_tasks_redriven",
                   "Tasks found dead in flight (no renewed lease, no waiting job, no answer: "
                   "a worker died, a job raised, a send failed) and sent again", ["slot"])
PROOFS = Counter("roller_proofs",
                 "Tasks finished, by proof type and outcome: accepted, refused (final "
                 "coordinator refusal), prover_error, poison (attempt budget spent), expired",
                 ["type", "outcome"])
FORK_ATTEMPTS = Counter("roller_fork_attempts",
                        "Proving attempts by proof type, the hard fork whose circuits ran "
                        "(roller.forks) and outcome: proved, prover_error",
                        ["type", "fork", "outcome"])
SUBMIT_ATTEMPTS = Counter("roller_submit_attempts",
                          "Proof submissions sent, by result (delivered, retry, refused)",
                          ["slot", "result"])
PROVE_SECONDS = Histogram("roller_prove_seconds", "Seconds spent proving one task (successes)",
                          ["type"], buckets=PROVE_BUCKETS)
END_TO_END_SECONDS = Histogram("roller_end_to_end_seconds",
                               "Seconds from task received to proof accepted",
                               ["type"], buckets=END_TO_END_BUCKETS)
TRACE_FETCH_SECONDS = Histogram("roller_trace_fetch_seconds",
                                "Seconds to fetch the block traces of one chunk task",
                                ["slot"], buckets=FETCH_BUCKETS)
TRACE_FETCH_RETRIES = Counter("roller_trace_fetch_retries",
                              "Trace fetch attempts that failed transiently and were retried "
                              "within the trace budget, by reason (connection, timeout, "
                              "http_5xx, rpc_error, null_trace, rate_limited)",
                              ["slot", "reason"])
TRACE_FETCH_RECOVERED = Counter("roller_trace_fetch_recovered",
                                "Trace fetches that succeeded after at least one retry: each "
                                "a get-traces-failed report (and a coordinator attempt) saved",
                                ["slot"])
SELF_CHECK_FAILURES = Counter("roller_self_check_failures",
                              "Proofs that failed the worker's own check against their task "
                              "(never stored nor submitted; proved again within the attempt "
                              "budget): a GPU computing wrong, or a prover bug",
                              ["slot", "type"])
TASK_ATTEMPTS = Histogram("roller_task_attempts",
                          "Proving attempts a task needed (observed when its proof is stored)",
                          ["type"], buckets=ATTEMPT_BUCKETS)
# livesum: a crashed child's file is dropped (mark_process_dead), so its 1 goes away too.
SLOT_PROVING = Gauge("roller_slot_proving", "1 while the slot's worker is proving",
                     ["slot"], multiprocess_mode="livesum")
SLOT_INFO = Gauge("roller_slot_info", "1 for each configured slot, with its queue (joins the "
                  "workers' per-queue and per-GPU series to slots)", ["slot", "queue"])
# Written by each worker's parent process (roller.worker.gpu_guard) for its own queues.
WORKER_CONSUMING = Gauge("roller_worker_consuming",
                         "1 while the worker consumes the queue, 0 once it stopped (a fenced "
                         "GPU)", ["worker", "queue"], multiprocess_mode="livemax")

# One series per GPU a worker drives: gpu is NVML's index (PCI bus order), uuid the device's.
GPU_LABELS = ["worker", "gpu", "uuid"]
GPU_UTILIZATION = Gauge("roller_gpu_utilization_ratio",
                        "Share of the last NVML sample period (about 1 s) the GPU was busy",
                        GPU_LABELS, multiprocess_mode="livemax")
GPU_MEMORY_USED = Gauge("roller_gpu_memory_used_bytes", "GPU memory in use", GPU_LABELS,
                        multiprocess_mode="livemax")
GPU_MEMORY_TOTAL = Gauge("roller_gpu_memory_total_bytes", "GPU memory installed", GPU_LABELS,
                         multiprocess_mode="livemax")
GPU_TEMPERATURE = Gauge("roller_gpu_temperature_celsius", "GPU core temperature", GPU_LABELS,
                        multiprocess_mode="livemax")
GPU_POWER = Gauge("roller_gpu_power_watts", "GPU power draw", GPU_LABELS,
                  multiprocess_mode="livemax")
GPU_ECC_UNCORRECTED = Gauge("roller_gpu_ecc_uncorrected_errors",
                            "Uncorrectable ECC errors since the GPU's last reset (volatile)",
                            GPU_LABELS, multiprocess_mode="livemax")
GPU_RETIRED_PAGES_PENDING = Gauge("roller_gpu_retired_pages_pending",
                                  "1 when retired memory pages wait for a GPU reset",
                                  GPU_LABELS, multiprocess_mode="livemax")
GPU_REMAP_PENDING = Gauge("roller_gpu_remapped_rows_pending",
                          "1 when remapped memory rows wait for a GPU reset", GPU_LABELS,
                          multiprocess_mode="livemax")
GPU_THROTTLED = Gauge("roller_gpu_throttled",
                      "1 for each clock event (throttle) reason active on the GPU",
                      [*GPU_LABELS, "reason"], multiprocess_mode="livemax")
GPU_FENCED = Gauge("roller_gpu_fenced",
                   "1 once the GPU is fenced (reason: lost, ecc_uncorrected, "
                   "row_remap_failure, self_check): its worker stopped consuming",
                   [*GPU_LABELS, "reason"], multiprocess_mode="livemax")


def session_state(slot: str, state: str, generation: str | None = None,
                  token_expires: float | None = None) -> None:
    for name in SESSION_STATES:
        SESSION_STATE.labels(slot, name).set(1 if name == state else 0)
    if generation is not None:
        previous = _generations.get(slot)
        if previous not in (None, generation):  # one generation per slot at a time
            GENERATION.remove(slot, previous)
        _generations[slot] = generation
        GENERATION.labels(slot, generation).set(1)
        TOKEN_EXPIRES.labels(slot).set(token_expires or 0)


_generations: dict[str, str] = {}


def proof_outcome(prove_type: int, outcome: str) -> None:
    PROOFS.labels(proof_kind(prove_type), outcome).inc()


def record(event: Event) -> None:  # noqa: C901 (one arm per event: a table, not logic)
    """The metrics' observer of lifecycle events (roller.lifecycle.events): the listener
    and the worker subscribe it; each event moves the series named here and nothing else."""
    match event:
        case Received(slot, prove_type):
            TASKS_RECEIVED.labels(slot, proof_kind(prove_type)).inc()
        case Deduplicated(slot):
            TASKS_DEDUPLICATED.labels(slot).inc()
        case AnsweredWithoutJob(slot, failure_class):
            TASKS_ANSWERED_WITHOUT_JOB.labels(slot, failure_class).inc()
        case Queued(queue):
            JOBS_QUEUED.labels(queue).inc()
        case Redriven(slot):
            REDRIVES.labels(slot).inc()
        case TracesFetched(slot, seconds):
            TRACE_FETCH_SECONDS.labels(slot).observe(seconds)
        case TraceRetried(slot, reason):
            TRACE_FETCH_RETRIES.labels(slot, reason).inc()
        case TracesRecovered(slot, _retries):
            TRACE_FETCH_RECOVERED.labels(slot).inc()
        case ProvingStarted(slot):
            SLOT_PROVING.labels(slot).set(1)
        case ProvingEnded(slot):
            SLOT_PROVING.labels(slot).set(0)
        case SelfCheckFailed(slot, prove_type, _fork):
            SELF_CHECK_FAILURES.labels(slot, proof_kind(prove_type)).inc()
        case AttemptEnded(prove_type, outcome, attempts, seconds, fork):
            kind = proof_kind(prove_type)
            if fork:
                FORK_ATTEMPTS.labels(kind, fork, outcome).inc()
            if outcome != "proved":
                PROOFS.labels(kind, outcome).inc()
            TASK_ATTEMPTS.labels(kind).observe(attempts)
            if seconds is not None:
                PROVE_SECONDS.labels(kind).observe(seconds)
        case Expired(prove_type):
            proof_outcome(prove_type, "expired")
        case SubmitTried(slot, result):
            SUBMIT_ATTEMPTS.labels(slot, result).inc()
        case Delivered(prove_type, age_seconds):
            proof_outcome(prove_type, "accepted")
            END_TO_END_SECONDS.labels(proof_kind(prove_type)).observe(age_seconds)
        case Refused(prove_type):
            proof_outcome(prove_type, "refused")
        case SessionUp(slot, generation, token_expires):
            session_state(slot, "registered", generation, token_expires)
        case SessionLost(slot):
            session_state(slot, "disconnected")
            RECONNECTS.labels(slot).inc()
        case TokenRenewed(slot, expires):
            TOKEN_EXPIRES.labels(slot).set(expires)


def init_slots(slots: Iterable[SlotConfig]) -> None:
    """Create every per-slot series at zero, so dashboards show idle slots, not gaps."""
    for slot in slots:
        SLOT_INFO.labels(slot.name, slot.queue).set(1)
        TASKS_DEDUPLICATED.labels(slot.name)
        REDRIVES.labels(slot.name)
        RECONNECTS.labels(slot.name)
        TASKS_RECEIVED.labels(slot.name, proof_kind(slot.prove_type))
        JOBS_QUEUED.labels(slot.queue)
        for outcome in OUTCOMES:
            PROOFS.labels(proof_kind(slot.prove_type), outcome)


class LedgerCollector(Collector):
    """Queue depth, outbox size and age, Redis memory: read from Redis when scraped (always
    current). Redis unreachable: the scrape has none of them (logged), never an error."""

    def __init__(self, ledger: TaskLedger, slots: Iterable[SlotConfig],
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.slots = list(slots)
        self.clock = clock

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (GaugeMetricFamily("roller_queue_depth", "Jobs waiting in each slot queue",
                                  labels=["queue"]),
                GaugeMetricFamily("roller_outbox_size",
                                  "Answers stored but not yet accepted, per slot",
                                  labels=["slot"]),
                GaugeMetricFamily("roller_outbox_oldest_age_seconds",
                                  "Seconds since the slot's oldest undelivered answer was "
                                  "stored (0 with an empty outbox)", labels=["slot"]),
                GaugeMetricFamily("roller_redis_used_memory_bytes",
                                  "Memory the broker's Redis uses (INFO used_memory)",
                                  labels=[]),
                GaugeMetricFamily("roller_redis_maxmemory_bytes",
                                  "The broker's Redis maxmemory (0: no limit)", labels=[]))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, outbox, oldest, used, maxmemory = self._families()
        queues = list(dict.fromkeys(s.queue for s in self.slots))
        try:
            pipe = self.ledger.r.pipeline(transaction=False)
            for queue in queues:
                for key in queue_keys(queue):
                    pipe.llen(key)
            lengths = pipe.execute()
            sizes = {s.name: self.ledger.outbox_size(s.name) for s in self.slots}
            # Only the in-flight rows (small fields): an answer waits as a `proved` record.
            stored = {s.name: [row.updated_at for row in self.ledger.live_rows(s.name)
                               if row.due] for s in self.slots}
            memory = self.ledger.r.info("memory")
        except redis.RedisError as exc:
            log.warning("metrics: cannot read Redis %s", kv(error=describe(exc)))
            return
        now = self.clock()
        steps = len(queue_keys(""))
        for i, queue in enumerate(queues):
            depth.add_metric([queue], sum(lengths[i * steps:(i + 1) * steps]))
        for slot, count in sizes.items():
            outbox.add_metric([slot], count)
            times = stored[slot]
            oldest.add_metric([slot], max(now - min(times), 0.0) if times else 0.0)
        used.add_metric([], float(memory.get("used_memory", 0)))
        maxmemory.add_metric([], float(memory.get("maxmemory", 0)))
        yield from (depth, outbox, oldest, used, maxmemory)


def serve(cfg: MetricsConfig, port: int, registry: CollectorRegistry | None = None,
          what: str = "listener") -> int | None:
    """Start a scrape endpoint in a daemon thread; returns the bound port (port 0 picks one).

    A port in use is logged and skipped: metrics never stop the roller from proving.
    """
    try:
        httpd, _thread = start_http_server(port, cfg.bind, registry or REGISTRY)
    except OSError as exc:
        log.error("metrics endpoint not started %s", kv(what=what, bind=cfg.bind, port=port,
                                                         error=exc))
        return None
    bound = int(httpd.server_port)
    log.info("metrics endpoint listening %s", kv(what=what, url=f"http://{cfg.bind}:{bound}/"))
    return bound


def serve_listener(cfg: MetricsConfig, ledger: TaskLedger,
                   slots: Iterable[SlotConfig]) -> int | None:
    slots = list(slots)
    init_slots(slots)
    REGISTRY.register(LedgerCollector(ledger, slots))
    return serve(cfg, cfg.listener_port)
