"""Coordinator metrics named as spec 5.8 (`/` becomes `_`; per-roller ones suffixed `_<pk>`).

Counters and gauges keep their value; timers (seconds since the session was created)
are exported as summaries (count and sum). State lives on the event loop thread; the
control API reads snapshots (a dict copy is atomic enough for monitoring).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)


def _prom_name(name: str) -> str:
    return name.replace("/", "_")


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, float] = {
            "coordinator/rollers/disconnects/total": 0,
            "coordinator/proofs/received/total": 0,
            "coordinator/sessions/success/total": 0,
            "coordinator/sessions/timeout/total": 0,
            "coordinator/sessions/failed/total": 0,
        }
        self.gauges: dict[str, float] = {"coordinator/sessions/active/number": 0}
        self.timers: dict[str, tuple[int, float]] = {}
        self.rollers: dict[str, dict[str, Any]] = {}

    def inc(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def set_gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def observe(self, name: str, seconds: float, pk: str | None = None) -> None:
        target = self.timers if pk is None else self.rollers.setdefault(pk, {})
        count, total = target.get(name, (0, 0.0))
        target[name] = (count + 1, total + seconds)

    def roller_set(self, pk: str, name: str, value: float) -> None:
        self.rollers.setdefault(pk, {})[name] = value

    def snapshot(self) -> dict[str, Any]:
        def timer(v: tuple[int, float]) -> dict[str, float]:
            return {"count": v[0], "sum": v[1]}

        return {
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            "timers": {k: timer(v) for k, v in self.timers.items()},
            "rollers": {
                pk: {k: timer(v) if isinstance(v, tuple) else v for k, v in dict(vals).items()}
                for pk, vals in dict(self.rollers).items()
            },
        }

    def collect(self) -> Iterator[Metric]:
        for name, value in dict(self.counters).items():
            yield CounterMetricFamily(_prom_name(name), name, value=value)
        for name, value in dict(self.gauges).items():
            yield GaugeMetricFamily(_prom_name(name), name, value=value)
        for name, (count, total) in dict(self.timers).items():
            yield SummaryMetricFamily(_prom_name(name), name, count_value=count, sum_value=total)
        for pk, values in dict(self.rollers).items():
            for name, value in dict(values).items():
                full = f"{_prom_name(name)}_{pk}"
                if isinstance(value, tuple):
                    yield SummaryMetricFamily(
                        full, f"{name}/{pk}", count_value=value[0], sum_value=value[1]
                    )
                else:
                    yield GaugeMetricFamily(full, f"{name}/{pk}", value=value)

    def prometheus_text(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        return bytes(generate_latest(registry))
