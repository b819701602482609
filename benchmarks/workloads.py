"""Task callables for the executor benchmark (importable as ``workloads:name`` by workers)."""

from __future__ import annotations


def fibo(n: int) -> int:
    """Naive recursion: the workload of Windmill's published orchestrator benchmark."""
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


def noop() -> None:
    return None


def numbers(n: int) -> list[int]:
    """The values a mapped task maps over."""
    return list(range(n))


def double(x: int) -> int:
    return 2 * x


def total(values: list[int]) -> int:
    return sum(values)


def write_log(megabytes: int) -> int:
    """Print ``megabytes`` MB of 100-byte log lines (none holding a secret); how many."""
    line = "2026-12-07 12:00:00 INFO worker processed batch with ordinary text, id=0000000 ok"
    lines = megabytes * 1_000_000 // (len(line) + 1)
    for number in range(lines):
        print(line)
    return lines
