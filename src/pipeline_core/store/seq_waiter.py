"""``SeqWaiter``: the highest event ``seq`` known to be committed, and waiting for it to pass
one — what a backend's ``wait_for_events`` sleeps on, whoever tells it (this process's
commits, a socket woken by other processes, a LISTEN connection)."""

from __future__ import annotations

import threading


class SeqWaiter:
    """The highest event ``seq`` known to be committed, and waiting for it to pass one."""

    def __init__(self, last: int) -> None:
        self._condition = threading.Condition()
        self._last = last

    def seen(self, seq: int) -> None:
        with self._condition:
            if seq > self._last:
                self._last = seq
                self._condition.notify_all()

    def wait(self, after_seq: int, timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: self._last > after_seq, timeout)

    def close(self) -> None:
        pass
