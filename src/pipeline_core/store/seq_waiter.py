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
        self._closed = False

    def seen(self, seq: int) -> None:
        with self._condition:
            if seq > self._last:
                self._last = seq
                self._condition.notify_all()

    def wait(self, after_seq: int, timeout: float) -> bool:
        """Whether ``seq`` passed ``after_seq`` within ``timeout``; ``False`` at once, and
        for every waiter, once the waiter is closed."""
        with self._condition:
            passed = self._condition.wait_for(
                lambda: self._last > after_seq or self._closed, timeout
            )
            return passed and self._last > after_seq

    def close(self) -> None:
        """Wake every wait, now and later: a store that closes keeps nobody sleeping."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
