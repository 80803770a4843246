"""Lifecycle events: the observers' contract (an observer's bug never breaks the path, `during`
and `timed` close however the block is left) and the metrics observer's table (each event
moves its series)."""

from __future__ import annotations

import logging

import pytest

from roller.lifecycle.events import (
    AnsweredWithoutJob,
    AttemptEnded,
    Delivered,
    Event,
    Expired,
    Observers,
    ProvingEnded,
    ProvingStarted,
    Queued,
    Received,
    Redriven,
    SessionLost,
    SessionUp,
    SubmitTried,
    TraceRetried,
    TracesFetched,
    TracesRecovered,
    timed,
)
from roller.observe import metrics


def test_a_failing_observer_is_logged_and_the_others_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Event] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("observer bug")

    events = Observers([broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="roller.lifecycle.events"):
        events.emit(Redriven("slot0"))
    assert seen == [Redriven("slot0")]
    assert "event observer failed" in caplog.text and "Redriven" in caplog.text


def test_subscribe_is_idempotent() -> None:
    seen: list[Event] = []
    events = Observers()
    events.subscribe(seen.append)
    events.subscribe(seen.append)
    events.emit(Queued("gpu0"))
    assert seen == [Queued("gpu0")]


def test_during_and_timed_close_when_the_block_raises() -> None:
    seen: list[Event] = []
    events = Observers([seen.append])
    took: list[float] = []
    with (pytest.raises(ValueError), events.during(ProvingStarted("s"), ProvingEnded("s")),
          timed(took.append)):
        raise ValueError("prover")
    assert seen == [ProvingStarted("s"), ProvingEnded("s")]
    assert len(took) == 1 and took[0] >= 0


def _value(metric: object, *labels: str) -> float:
    child = metric.labels(*labels)  # type: ignore[attr-defined]
    if hasattr(child, "_sum"):
        return float(child._sum.get())
    return float(child._value.get())


@pytest.mark.parametrize(("event", "metric", "labels", "step"), [
    (Received("ev0", 1), metrics.TASKS_RECEIVED, ("ev0", "batch"), 1),
    (AnsweredWithoutJob("ev0", "deterministic"), metrics.TASKS_ANSWERED_WITHOUT_JOB,
     ("ev0", "deterministic"), 1),
    (Queued("evq"), metrics.JOBS_QUEUED, ("evq",), 1),
    (Redriven("ev0"), metrics.REDRIVES, ("ev0",), 1),
    (TracesFetched("ev0", 2.5), metrics.TRACE_FETCH_SECONDS, ("ev0",), 2.5),
    (TraceRetried("ev0", "http_5xx"), metrics.TRACE_FETCH_RETRIES, ("ev0", "http_5xx"), 1),
    (TracesRecovered("ev0", 3), metrics.TRACE_FETCH_RECOVERED, ("ev0",), 1),
    (AttemptEnded(2, "poison", 3, None), metrics.PROOFS, ("bundle", "poison"), 1),
    (AttemptEnded(2, "proved", 1, 7.0), metrics.PROVE_SECONDS, ("bundle",), 7.0),
    (Expired(0), metrics.PROOFS, ("chunk", "expired"), 1),
    (SubmitTried("ev0", "retry"), metrics.SUBMIT_ATTEMPTS, ("ev0", "retry"), 1),
    (Delivered(1, 90.0), metrics.END_TO_END_SECONDS, ("batch",), 90.0),
    (SessionLost("ev0"), metrics.RECONNECTS, ("ev0",), 1),
])
def test_each_event_moves_its_series(event: Event, metric: object, labels: tuple[str, ...],
                                     step: float) -> None:
    before = _value(metric, *labels)
    metrics.record(event)
    assert _value(metric, *labels) == before + step


def test_session_and_proving_events_set_their_gauges() -> None:
    metrics.record(SessionUp("ev1", "http-h3", 1234.0))
    assert _value(metrics.SESSION_STATE, "ev1", "registered") == 1
    assert _value(metrics.TOKEN_EXPIRES, "ev1") == 1234.0
    metrics.record(SessionLost("ev1"))
    assert _value(metrics.SESSION_STATE, "ev1", "registered") == 0
    metrics.record(ProvingStarted("ev1"))
    assert _value(metrics.SLOT_PROVING, "ev1") == 1
    metrics.record(ProvingEnded("ev1"))
    assert _value(metrics.SLOT_PROVING, "ev1") == 0
