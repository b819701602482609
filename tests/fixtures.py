"""Task callables for tests (importable as ``tests.fixtures:name``)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

_lock = threading.Lock()
counts = {"running": 0, "peak": 0}
order: list[str] = []
attempts: dict[str, int] = {}
gates: dict[str, threading.Event] = {}


def reset() -> None:
    with _lock:
        counts.update(running=0, peak=0)
        order.clear()
        attempts.clear()
        gates.clear()


def track(name: str, seconds: float = 0.05) -> str:
    """Record the order of starts and the peak number running at once."""
    with _lock:
        counts["running"] += 1
        counts["peak"] = max(counts["peak"], counts["running"])
        order.append(name)
    time.sleep(seconds)
    with _lock:
        counts["running"] -= 1
    return name


def fail_times(name: str, times: int) -> str:
    """Fail the first ``times`` attempts, then succeed."""
    with _lock:
        attempts[name] = attempts.get(name, 0) + 1
        attempt = attempts[name]
    if attempt <= times:
        raise RuntimeError(f"attempt {attempt} of {name} fails")
    return f"{name} ok on attempt {attempt}"


def boom() -> None:
    raise ValueError("boom")


def add(a: int, b: int) -> int:
    return a + b


def with_context(context: Any) -> dict[str, Any]:
    context.xcom_push("extra", {"task": context.task_id, "try": context.try_number})
    context.log.info("hello from the task log")
    print("printed line")
    return {"run_id": context.run_id, "conf": context.conf, "ds": context.ds}


def not_json() -> object:
    return object()


def huge(size: int) -> str:
    return "x" * size


def wait_gate(name: str) -> str:
    gates.setdefault(name, threading.Event()).wait(30)
    return name


def open_gate(name: str) -> None:
    gates.setdefault(name, threading.Event()).set()


def flag_file_exists(path: str) -> bool:
    return os.path.exists(path)


def choose(context: Any) -> list[str]:
    return [context.conf.get("go", "left")]
