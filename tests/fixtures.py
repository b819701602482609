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


# --- for worker processes: state that must be seen across processes lives in files ------------


def count_try(path: str, fail_first: int = 0) -> int:
    """Count this call in ``path``; fail while the count is at most ``fail_first``."""
    with open(path, "a+", encoding="utf-8") as handle:
        handle.write("x")
    calls = os.path.getsize(path)
    if calls <= fail_first:
        raise RuntimeError(f"call {calls} fails")
    return calls


def write_pid(path: str) -> int:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    return os.getpid()


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self(signal_number: int) -> None:
    import signal

    os.kill(os.getpid(), signal.Signals(signal_number))


def crash_then_succeed(path: str) -> str:
    """The first call kills its process; the next one succeeds."""
    if count_try(path) == 1:
        os._exit(3)
    return "survived"


def spin(pid_file: str | None = None) -> None:
    """Busy forever (a hung task); writes its pid first when asked."""
    if pid_file:
        write_pid(pid_file)
    while True:
        pass


def spin_with_child(pid_file: str) -> None:
    """Start a child that would live for minutes, then spin: both must be killed."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    with open(pid_file, "w", encoding="utf-8") as handle:
        handle.write(str(child.pid))
    while True:
        pass


def hog_memory(megabytes: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(blocks)


def wait_for_files(folder: str, name: str, count: int, timeout: float = 20) -> int:
    """Write ``folder/name`` and wait until ``count`` files are there (a barrier across
    processes: it holds only if ``count`` tries run at once)."""
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {count} ran at once")
        time.sleep(0.01)
    return os.getpid()


# --- for mapped tasks ---------------------------------------------------------------------------


def numbers(n: int) -> list[int]:
    return list(range(n))


def value_of(value: Any) -> Any:
    """Whatever it is given (a dict, a string: an upstream that does not return a list)."""
    return value


def scale(x: int, factor: int = 1) -> int:
    return x * factor


def total(values: list[int]) -> int:
    return sum(values)


def crash_on(x: int, crash: int, folder: str) -> int:
    """Kill this try's process the first time it maps ``crash``; count every call of ``x``."""
    if count_try(os.path.join(folder, f"calls-{x}")) == 1 and x == crash:
        os._exit(3)
    return x


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"{x} is bad")
    return x


def record_call(path: str, x: int) -> int:
    """Append ``x`` to ``path`` (one small append: whole lines even from many processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{x}\n".encode())
    finally:
        os.close(fd)
    return x


def refresh(context: Any, rows: int) -> int:
    """Refresh a table: the update's extra tells how many rows it has."""
    context.xcom_push("asset_extra", {"rows": rows})
    return rows


def use_credentials(context: Any, shown: str, port: int) -> dict[str, Any]:
    """What a task gets from variables and connections, by template and by ``context``."""
    db = context.conn("db")
    return {
        "shown": shown,
        "port": port,
        "region": context.var("settings")["region"],
        "host": db.host,
        "missing": context.var("no_such_variable", "fallback"),
        "password": db.password,  # masked in the stored XCom
    }


def leak_secret(context: Any, secret: str, fail: bool) -> dict[str, Any]:
    """Everything a careless task does with a secret: print it (plain, quoted, JSON-escaped,
    inside a longer word), log it, push it, then return it or fail with it in the message."""
    import json
    import logging
    import sys

    print(secret)
    print(repr(secret), json.dumps({"password": secret}))
    print(f"prefix{secret}suffix", file=sys.stderr)
    context.log.info(f"connecting with {secret}")
    logging.getLogger("task").warning("token=%s", secret)
    context.xcom_push("leak", {"nested": [secret, f"x{secret}y"], secret: 1})
    if fail:
        raise RuntimeError(f"could not log in with {secret!r}")
    return {"token": secret, "url": f"https://api/?token={secret}"}
