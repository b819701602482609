"""``RetentionPolicy``: the clean-up run on a schedule (``--retention 90d``) in a thread of
the scheduler's process, so history past the age never builds up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline_core.errors import PipelineError
from pipeline_core.model import utcnow
from pipeline_core.retention.clean import Cleaner, CleanReport
from pipeline_core.store import Store

log = logging.getLogger(__name__)
#: The first clean-up waits this long after start, so it never slows a start down.
FIRST_DELAY = 60.0


class RetentionPolicy:
    """Every ``interval`` seconds, deletes the finished runs that ended more than ``age`` ago
    (all DAGs, with their rows and events; statistics kept in roll-ups). A clean-up that fails
    (the database away) is a warning, tried again at the next one."""

    def __init__(
        self,
        store: Store,
        age: timedelta,
        *,
        interval: float = 3600.0,
        first_delay: float = FIRST_DELAY,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.age, self.interval = store, age, interval
        self.first_delay, self.now = first_delay, now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        #: The last clean-up's report (``None`` before the first).
        self.last: CleanReport | None = None
        self.cleaned = threading.Event()  # set after each clean-up (tests wait on it)

    def start(self) -> RetentionPolicy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def clean_once(self) -> CleanReport:
        now = self.now()
        report = Cleaner(self.store, now - self.age, stop=self._stop).run(now)
        if report.runs or report.events:
            log.info(
                "retention: deleted %d run(s) (%d rows) and %d event(s) older than %s in %.1fs",
                report.runs, report.rows, report.events, self.age, report.seconds,
            )  # fmt: skip
        return report

    def _loop(self) -> None:
        wait = self.first_delay
        while not self._stop.wait(wait):
            try:
                self.last = self.clean_once()
            except PipelineError as exc:
                log.warning("retention: the clean-up failed (%s); trying again later", exc)
            self.cleaned.set()
            wait = self.interval
