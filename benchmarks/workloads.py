"""Task callables for the executor benchmark (importable as ``workloads:name`` by workers)."""

from __future__ import annotations


def fibo(n: int) -> int:
    """Naive recursion: the workload of Windmill's published orchestrator benchmark."""
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


def noop() -> None:
    return None
