"""Whether another engine still owns what it was running: its heartbeat is its lease.

A lease ends when its engine releases it (a clean stop), when the engine is provably gone (it
ran on this host and its process no longer exists), or when it has not been renewed for
``expire_after`` seconds (an engine elsewhere, or a process id taken by something else).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from pipeline_core.store.types import Heartbeat

_LIVE_IN_THIS_PROCESS: set[str] = set()
_LIVE_LOCK = threading.Lock()


def hold(component_id: str) -> None:
    """Note that an engine of this process runs as ``component_id``."""
    with _LIVE_LOCK:
        _LIVE_IN_THIS_PROCESS.add(component_id)


def let_go(component_id: str) -> None:
    with _LIVE_LOCK:
        _LIVE_IN_THIS_PROCESS.discard(component_id)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_holders(
    beats: Iterable[Heartbeat],
    *,
    me: str,
    hostname: str,
    now: datetime,
    expire_after: float,
    exists: Callable[[int], bool] = process_exists,
) -> list[Heartbeat]:
    """The other engines whose leases still hold."""
    return [
        beat
        for beat in beats
        if beat.component_id != me
        and (now - beat.last_heartbeat).total_seconds() < expire_after
        and not _provably_gone(beat, hostname, exists)
    ]


def _provably_gone(beat: Heartbeat, hostname: str, exists: Callable[[int], bool]) -> bool:
    if beat.hostname != hostname:
        return False
    if beat.pid == os.getpid():  # this very process: gone unless one of its engines runs it
        with _LIVE_LOCK:
            return beat.component_id not in _LIVE_IN_THIS_PROCESS
    return not exists(beat.pid)
