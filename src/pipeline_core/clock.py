"""``Clock``: where the edges read the time, so that tests can set it instead of waiting.

The engine's decisions never read a clock: its loop reads one ``Clock`` once per wake-up and
passes the moment in. ``SystemClock`` is the real one.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from pipeline_core.model import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, aware UTC: what is stored and shown."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: what delays and budgets are measured on."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()
