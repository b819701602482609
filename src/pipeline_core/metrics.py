"""Metrics hooks. The engine and scheduler report through ``Metrics``; ``NullMetrics`` is the
default and costs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Metrics(Protocol):
    """Where components report counters, gauges and observations. Must never raise."""

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None: ...

    def gauge(self, name: str, value: float, /, **labels: str) -> None: ...

    def histogram(self, name: str, value: float, /, **labels: str) -> None: ...


class NullMetrics:
    """Discards everything."""

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None:
        pass

    def gauge(self, name: str, value: float, /, **labels: str) -> None:
        pass

    def histogram(self, name: str, value: float, /, **labels: str) -> None:
        pass


@contextmanager
def timer(metrics: Metrics, name: str, **labels: str) -> Iterator[None]:
    """Observe the duration of the block in milliseconds."""
    import time

    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.histogram(name, (time.perf_counter() - start) * 1000, **labels)
