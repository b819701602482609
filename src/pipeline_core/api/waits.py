"""``RunWaiters``: requests held until a run ends (``GET .../runs/:run_id/wait``).

A held request costs an entry here, no thread: the store's feed wakes the waiters of a run
when its terminal ``run.state_changed`` is committed, and one timer thread wakes those whose
timeout passed. Waking means handing the request back to the server, which runs its route
again with ``Request.woken`` set; the route then answers from the store.

The route reads the run before it is held, so an end committed between that read and the
hold would be missed; the runs that ended recently are therefore remembered (until a later
event moves them again), and a hold on one of them wakes at once.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline_core.events import Event
from pipeline_core.state import FINISHED_RUN_STATES

RunKey = tuple[str, str]
#: Why a held request was handed back.
ENDED, TIMED_OUT, STOPPING = "ended", "timed_out", "stopping"
#: Runs remembered as just ended (a hold arriving after the end wakes at once).
RECENT_ENDS = 10_000
FINISHED = {s.value for s in FINISHED_RUN_STATES}
Wake = Callable[[str], None]


@dataclass(eq=False)
class _Waiter:
    key: RunKey
    deadline: float
    wake: Wake
    woken: bool = field(default=False)


class RunWaiters:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._by_run: dict[RunKey, list[_Waiter]] = {}
        self._deadlines: list[tuple[float, int, _Waiter]] = []
        self._order = itertools.count()
        self._ended: OrderedDict[RunKey, None] = OrderedDict()
        self._stopped = False
        self._thread = threading.Thread(target=self._expire, name="api-waits", daemon=True)
        self._thread.start()

    def hold(self, key: RunKey, deadline: float, wake: Wake) -> None:
        """Call ``wake(reason)`` once: when the run ends, ``deadline`` (monotonic) passes,
        or the server stops — whichever comes first."""
        with self._lock:
            reason = STOPPING if self._stopped else ENDED if key in self._ended else None
            if reason is None:
                waiter = _Waiter(key, deadline, wake)
                self._by_run.setdefault(key, []).append(waiter)
                heapq.heappush(self._deadlines, (deadline, next(self._order), waiter))
                self._lock.notify()
                return
        wake(reason)

    def held(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._by_run.values())

    def on_events(self, events: list[Event]) -> None:
        """From the store's feed: wake the waiters of every run that ended."""
        woken: list[_Waiter] = []
        with self._lock:
            for event in events:
                if event.type != "run.state_changed" or event.run_id is None:
                    continue
                key = (event.dag_id or "", event.run_id)
                if event.payload.get("new_state") not in FINISHED:
                    self._ended.pop(key, None)
                    continue
                self._ended[key] = None
                self._ended.move_to_end(key)
                if len(self._ended) > RECENT_ENDS:
                    self._ended.popitem(last=False)
                woken.extend(self._take(key))
            if len(self._deadlines) > 64 and len(self._deadlines) > 2 * len(self._by_run):
                self._deadlines = [d for d in self._deadlines if not d[2].woken]
                heapq.heapify(self._deadlines)
        for waiter in woken:
            waiter.wake(ENDED)

    def stop(self) -> None:
        """Hand every held request back (``STOPPING``) and end the timer thread."""
        with self._lock:
            self._stopped = True
            woken = [w for waiters in self._by_run.values() for w in waiters if not w.woken]
            for waiter in woken:
                waiter.woken = True
            self._by_run.clear()
            self._deadlines.clear()
            self._lock.notify()
        for waiter in woken:
            waiter.wake(STOPPING)
        self._thread.join(timeout=5)

    def _take(self, key: RunKey) -> list[_Waiter]:
        """The run's waiters not woken yet, marked woken (under the lock)."""
        waiters = [w for w in self._by_run.pop(key, []) if not w.woken]
        for waiter in waiters:
            waiter.woken = True
        return waiters

    def _expire(self) -> None:
        while True:
            due: list[_Waiter] = []
            with self._lock:
                if self._stopped:
                    return
                now = self._clock()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, waiter = heapq.heappop(self._deadlines)
                    if not waiter.woken:
                        waiter.woken = True
                        self._drop(waiter)
                        due.append(waiter)
                if not due:
                    timeout = self._deadlines[0][0] - now if self._deadlines else None
                    self._lock.wait(timeout)
            for waiter in due:
                waiter.wake(TIMED_OUT)

    def _drop(self, waiter: _Waiter) -> None:
        waiters = self._by_run.get(waiter.key)
        if waiters is not None:
            waiters.remove(waiter)
            if not waiters:
                del self._by_run[waiter.key]
