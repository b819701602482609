"""Of several ``pipeline-core scheduler`` processes on one database, one is active; the
others are standbys that take over when it dies.

A scheduler becomes active by claiming ``active-engine`` in the store (an advisory lock on
PostgreSQL, a file lock on SQLite; the database drops it with a dead holder). A standby asks
again every ``POLL_INTERVAL`` and heartbeats as ``standby`` meanwhile, so
``/api/v1/health`` lists it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from pipeline_core.store.base import Store
from pipeline_core.store.claims import Claim

ACTIVE_ENGINE = "active-engine"
POLL_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 5.0
log = logging.getLogger("pipeline_core")


def wait_to_be_active(store: Store, stop: threading.Event, lost: threading.Event) -> Claim | None:
    """Block until this process holds the claim (``None`` if ``stop`` is set first). Should
    the database end the claim later, ``lost`` and ``stop`` are set: another scheduler may be
    active by then, so this one must stop at once."""

    def on_lost() -> None:
        log.error("the active-engine claim on %s was lost; stopping at once", store.url)
        lost.set()
        stop.set()

    standby_id = f"standby-{socket.gethostname()}-{os.getpid()}"
    waited = False
    next_beat = 0.0
    while not stop.is_set():
        claim = store.claim(ACTIVE_ENGINE, on_lost=on_lost)
        if claim is not None:
            if waited:
                store.heartbeats.release_heartbeat(standby_id)
                log.info("this scheduler is active now: taking over")
            return claim
        if not waited:
            log.info("standby: another scheduler is active on %s; waiting to take over", store.url)
            waited = True
        if next_beat <= 0:
            store.heartbeats.heartbeat(
                standby_id, kind="standby", hostname=socket.gethostname(), pid=os.getpid()
            )
            next_beat = HEARTBEAT_INTERVAL
        stop.wait(POLL_INTERVAL)
        next_beat -= POLL_INTERVAL
    if waited:
        store.heartbeats.release_heartbeat(standby_id)
    return None
