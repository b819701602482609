"""What a worker's end means: the error a try gets when its worker dies, and the back-off of
a pool whose workers die while starting."""

from __future__ import annotations

import signal
import time

from pipeline_core.dag.model import Task, format_size

#: Consecutive start-up deaths after which the pool fails tries instead of queueing them.
BROKEN_AFTER = 3
MAX_BACKOFF = 5.0


def exit_reason(code: int, task: Task | None = None) -> str:
    """``code`` as ``os.waitstatus_to_exitcode`` gives it (negative: killed by that signal),
    in words, naming the task's limit where the way it died points at one."""
    if code >= 0:
        return f"worker exited with code {code}"
    number = -code
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if task is not None and task.cpu_time_limit is not None and number == signal.SIGXCPU:
        return f"cpu_time_limit {task.cpu_time_limit:g}s exceeded (worker killed by {name})"
    if number == signal.SIGKILL:
        text = f"worker killed by signal {number} (out of memory?)"
    else:
        text = f"worker killed by signal {number} ({name})"
    if task is not None and task.memory_limit is not None and number in _MEMORY_SIGNALS:
        text += f"; the task has memory_limit {format_size(task.memory_limit)}"
    return text


_MEMORY_SIGNALS = {signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}


class StartFailures:
    """Counts workers that died before they were ready; backs off between attempts."""

    def __init__(self) -> None:
        self.count = 0
        self.last_reason: str | None = None
        self._not_before = 0.0

    def failed(self, reason: str) -> None:
        self.count += 1
        self.last_reason = reason
        self._not_before = time.monotonic() + min(MAX_BACKOFF, 0.05 * 2**self.count)

    def started(self) -> None:
        self.count = 0
        self.last_reason = None
        self._not_before = 0.0

    @property
    def broken(self) -> str | None:
        """Why no worker can start, once enough have died trying in a row."""
        return self.last_reason if self.count >= BROKEN_AFTER else None

    def retry_in(self) -> float:
        """Seconds until the next start may be tried (0.0: now)."""
        return max(0.0, self._not_before - time.monotonic())
