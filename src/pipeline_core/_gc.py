"""``gc_paused``: keep the cyclic garbage collector out of allocation-heavy, cycle-free work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while building many small objects that form no cycles.

    Loading a large DAG or decoding a thousand events allocates enough to trigger repeated
    collections that rescan the whole heap (superlinear loading, 10 ms latency spikes); the
    objects are freed by reference counting anyway. Safe across threads: the collector is
    only re-enabled by the caller that found it enabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
