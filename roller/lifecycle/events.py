"""What happens to a task and to a slot's session, as events: the hot path says what
happened (`events.emit(Delivered(...))`), observers decide what to count or print.

The listener and the worker each build one `Observers` at start (the Prometheus observer,
roller.observe.metrics.record, is the one they subscribe) and hand it to the parts that emit.
The metric each event moves is the observer's business, so the job, the dispatcher, the
reconciler and the submitter name no metric.

Failure model: an observer that raises is logged (ERROR, with the event) and the others still
run; an observer never breaks the task's path. Observers run on the emitting thread: they
must be quick (a counter, a log line), never I/O that can block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


# --- the task's life, in the order a task lives ----------------------------------------


@dataclass(frozen=True)
class Received:
    """The coordinator assigned a task to the slot (listener)."""

    slot: str
    prove_type: int


@dataclass(frozen=True)
class Deduplicated:
    """A notification of a task already recorded and in flight: no new job (listener)."""

    slot: str


@dataclass(frozen=True)
class AnsweredWithoutJob:
    """A task this identity will not prove, answered at once with a failure report
    (roller.lifecycle.budget; listener)."""

    slot: str
    failure_class: str


@dataclass(frozen=True)
class Queued:
    """A job message sent to a GPU queue (listener)."""

    queue: str


@dataclass(frozen=True)
class Redriven:
    """A dead in-flight task sent again (roller.lifecycle.liveness; listener)."""

    slot: str


@dataclass(frozen=True)
class TracesFetched:
    """A chunk task's block traces fetched (worker)."""

    slot: str
    seconds: float


@dataclass(frozen=True)
class TraceRetried:
    """A trace fetch failed transiently and is retried within its budget (worker); `reason`
    is roller.worker.trace_client's RETRY_REASONS (connection, timeout, http_5xx, ...)."""

    slot: str
    reason: str


@dataclass(frozen=True)
class TracesRecovered:
    """A trace fetch succeeded after `retries` retries (worker): a `get traces failed` report,
    and one of the coordinator's attempts at the task, saved."""

    slot: str
    retries: int


@dataclass(frozen=True)
class ProvingStarted:
    """The prover runs for the slot's task: its GPU is busy (worker)."""

    slot: str


@dataclass(frozen=True)
class ProvingEnded:
    """The prover returned, a proof or an error (worker)."""

    slot: str


@dataclass(frozen=True)
class SelfCheckFailed:
    """A proof failed the worker's own check against its task (roller.worker.job): it is not
    stored, and the task is proved again within its attempt budget (worker)."""

    slot: str
    prove_type: int
    fork: str


@dataclass(frozen=True)
class AttemptEnded:
    """A proving attempt ended with an answer (worker). `outcome`: "proved", "prover_error"
    or "poison" (the attempt budget was spent: answered without proving); `seconds` is the
    proving time of a proof, None otherwise; `fork` the hard fork whose circuits ran."""

    prove_type: int
    outcome: str
    attempts: int
    seconds: float | None
    fork: str = ""  # the hard fork proved under (roller.forks); "" when nothing was proved


@dataclass(frozen=True)
class Expired:
    """The session window passed before the task was answered (roller.lifecycle.window)."""

    prove_type: int


@dataclass(frozen=True)
class SubmitTried:
    """One submission of an answer; `result`: delivered, retry or refused (listener)."""

    slot: str
    result: str


@dataclass(frozen=True)
class Delivered:
    """The coordinator accepted the proof; `age_seconds` since the task was received."""

    prove_type: int
    age_seconds: float


@dataclass(frozen=True)
class Refused:
    """The coordinator refused the answer for good (listener)."""

    prove_type: int


# --- the slot's coordinator session ------------------------------------------------------


@dataclass(frozen=True)
class SessionUp:
    """The slot's session is registered (WS) or logged in (HTTP)."""

    slot: str
    generation: str
    token_expires: float | None


@dataclass(frozen=True)
class TokenRenewed:
    """The slot's login token was renewed (HTTP); `expires` its Unix expiry, 0 if none."""

    slot: str
    expires: float


@dataclass(frozen=True)
class SessionLost:
    """The slot's session went down; it is retried."""

    slot: str


Event = (Received | Deduplicated | AnsweredWithoutJob | Queued | Redriven | TracesFetched
         | TraceRetried | TracesRecovered | ProvingStarted | ProvingEnded | SelfCheckFailed
         | AttemptEnded | Expired | SubmitTried | Delivered | Refused | SessionUp | TokenRenewed
         | SessionLost)
Observer = Callable[[Event], None]


class Observers:
    """The observers of one process's events (the module's docstring)."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers: tuple[Observer, ...] = tuple(observers)
        self._lock = threading.Lock()

    def subscribe(self, observer: Observer) -> None:
        with self._lock:
            if observer not in self._observers:
                self._observers = (*self._observers, observer)

    def emit(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:  # an observer's bug must not cost the task its answer
                log.exception("event observer failed event=%r", event)

    @contextmanager
    def during(self, start: Event, end: Event) -> Iterator[None]:
        """`start` now, `end` when the block is left, however it is left."""
        self.emit(start)
        try:
            yield
        finally:
            self.emit(end)


@contextmanager
def timed(done: Callable[[float], None]) -> Iterator[None]:
    """Call `done` with the block's monotonic seconds when it is left, however it is left."""
    started = time.monotonic()
    try:
        yield
    finally:
        done(time.monotonic() - started)
