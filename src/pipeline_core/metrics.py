"""Metrics: counters, gauges and histograms with labels, plus exporters.

Recording is thread-safe, O(1) and never raises into the caller. Histograms keep fixed
buckets (bounded memory whatever the traffic) plus count, sum, min and max; quantiles are
estimated by linear interpolation inside the bucket that holds the rank, so their error is
at most one bucket's width. The default buckets suit milliseconds.

Built-in names: ``dag_run.created/started/completed/failed/cancelled``, ``dag_run.duration_ms``,
``task.started/completed/failed/retried``, ``task.duration_ms``, ``scheduler.tick_duration_ms``,
``scheduler.heartbeat``, ``scheduler.runs_created``, ``engine.heartbeat``, ``pool.slots_used``,
``pool.slots_available``, ``pool.queued``, ``xcom.size_bytes``, ``workers.busy``,
``workers.idle``, ``worker.restarts``, ``task.killed`` (label ``reason``).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger("pipeline_core.metrics")
DEFAULT_BUCKETS = (
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
)
LabelKey = tuple[tuple[str, str], ...]


class Metrics(Protocol):
    """Where components report. Implementations must never raise."""

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None: ...

    def gauge(self, name: str, value: float, /, **labels: str) -> None: ...

    def histogram(self, name: str, value: float, /, **labels: str) -> None: ...


class NullMetrics:
    """Discards everything (the default)."""

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None:
        pass

    def gauge(self, name: str, value: float, /, **labels: str) -> None:
        pass

    def histogram(self, name: str, value: float, /, **labels: str) -> None:
        pass


class _Histogram:
    __slots__ = ("count", "counts", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one is +Inf
        self.count, self.sum = 0, 0.0
        self.min, self.max = math.inf, -math.inf


class MetricsCollector:
    """In-process metrics store; ``snapshot()`` for JSON, ``prometheus()`` for scraping."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = {}
        self._gauges: dict[str, dict[LabelKey, float]] = {}
        self._histograms: dict[str, dict[LabelKey, _Histogram]] = {}

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None:
        try:
            key = _labels(labels)
            with self._lock:
                series = self._counters.setdefault(name, {})
                series[key] = series.get(key, 0.0) + value
        except Exception:  # metrics must never break the caller
            logger.exception("could not record counter %s", name)

    def gauge(self, name: str, value: float, /, **labels: str) -> None:
        try:
            key = _labels(labels)
            with self._lock:
                self._gauges.setdefault(name, {})[key] = float(value)
        except Exception:
            logger.exception("could not record gauge %s", name)

    def histogram(self, name: str, value: float, /, **labels: str) -> None:
        try:
            key, number = _labels(labels), float(value)
            index = bisect.bisect_left(self.buckets, number)
            with self._lock:
                series = self._histograms.setdefault(name, {})
                hist = series.get(key)
                if hist is None:
                    hist = series[key] = _Histogram(len(self.buckets))
                hist.counts[index] += 1
                hist.count += 1
                hist.sum += number
                hist.min = min(hist.min, number)
                hist.max = max(hist.max, number)
        except Exception:
            logger.exception("could not record histogram %s", name)

    @contextmanager
    def timer(self, name: str, **labels: str) -> Iterator[None]:
        """Record the block's duration in milliseconds into histogram ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.histogram(name, (time.perf_counter() - start) * 1000, **labels)

    def snapshot(self) -> dict[str, Any]:
        """Every series as JSON-ready data."""
        with self._lock:
            counters = _series(self._counters)
            gauges = _series(self._gauges)
            histograms = [
                {"name": name, "labels": dict(key), **self._describe(hist)}
                for name, series in sorted(self._histograms.items())
                for key, hist in sorted(series.items())
            ]
        return {"counters": counters, "gauges": gauges, "histograms": histograms}

    def _describe(self, hist: _Histogram) -> dict[str, Any]:
        cumulative, buckets = 0, {}
        for bound, count in zip((*self.buckets, math.inf), hist.counts, strict=True):
            cumulative += count
            buckets["+Inf" if bound == math.inf else _number(bound)] = cumulative
        return {
            "count": hist.count,
            "sum": hist.sum,
            "min": hist.min if hist.count else None,
            "max": hist.max if hist.count else None,
            "buckets": buckets,
            **{f"p{q}": self._quantile(hist, q / 100) for q in (50, 90, 99)},
        }

    def _quantile(self, hist: _Histogram, q: float) -> float | None:
        if not hist.count:
            return None
        rank = q * hist.count
        seen = 0
        for index, count in enumerate(hist.counts):
            if count and seen + count >= rank:
                low = self.buckets[index - 1] if index > 0 else min(0.0, hist.min)
                high = self.buckets[index] if index < len(self.buckets) else hist.max
                low, high = max(low, hist.min), min(high, hist.max)
                return low + (high - low) * ((rank - seen) / count)
            seen += count
        return hist.max

    def prometheus(self, prefix: str = "pipeline_core") -> str:
        """The Prometheus text exposition format (version 0.0.4), in base units."""
        from pipeline_core.exposition import exposition

        return exposition(self.snapshot(), "prometheus", prefix)


def _labels(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _series(table: dict[str, dict[LabelKey, float]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "labels": dict(key), "value": value}
        for name, series in sorted(table.items())
        for key, value in sorted(series.items())
    ]


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# --- exporters ------------------------------------------------------------------------------


class PeriodicExporter:
    """Calls ``export(snapshot)`` every ``interval`` seconds on its own thread; an exporter that
    raises is logged and keeps its schedule (the engine never notices)."""

    def __init__(
        self, collector: MetricsCollector, export: Callable[[dict[str, Any]], None], interval: float
    ) -> None:
        self.collector, self.export, self.interval = collector, export, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-exporter", daemon=True)

    def start(self) -> PeriodicExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def flush(self) -> None:
        try:
            self.export(self.collector.snapshot())
        except Exception:
            logger.exception("metrics exporter failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def json_file_exporter(
    collector: MetricsCollector, path: str | Path, interval: float = 60.0
) -> PeriodicExporter:
    """Write the snapshot to ``path`` (atomically: a temporary file, then a rename)."""
    target = Path(path)

    def write(snapshot: dict[str, Any]) -> None:
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_text(json.dumps({"timestamp": time.time(), **snapshot}, indent=2))
        temporary.replace(target)

    return PeriodicExporter(collector, write, interval)


def callback_exporter(
    collector: MetricsCollector, callback: Callable[[dict[str, Any]], None], interval: float = 60.0
) -> PeriodicExporter:
    return PeriodicExporter(collector, callback, interval)


def log_summary_exporter(
    collector: MetricsCollector, log: logging.Logger | None = None, interval: float = 60.0
) -> PeriodicExporter:
    """Log one line per counter and histogram (count, p50, p99)."""
    target = log or logger

    def summarise(snapshot: dict[str, Any]) -> None:
        for item in snapshot["counters"]:
            target.info(
                "metric %s%s = %s", item["name"], item["labels"] or "", _number(item["value"])
            )
        for item in snapshot["histograms"]:
            target.info(
                "metric %s%s: count %d, p50 %.1f, p99 %.1f",
                item["name"],
                item["labels"] or "",
                item["count"],
                item["p50"] or 0,
                item["p99"] or 0,
            )

    return PeriodicExporter(collector, summarise, interval)


@contextmanager
def timer(metrics: Metrics, name: str, **labels: str) -> Iterator[None]:
    """Observe the duration of the block in milliseconds on any ``Metrics``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.histogram(name, (time.perf_counter() - start) * 1000, **labels)
