"""The dashboard takes every event type the stream sends that a view may follow: an
EventSource hands a named event only to the listeners of its name."""

from __future__ import annotations

import re
from pathlib import Path

import pipeline_core
from pipeline_core.events import EVENT_TYPES

LIVE = Path(pipeline_core.__file__).parent / "ui" / "static" / "live.js"


def test_the_page_listens_to_every_event_type_but_the_servers_own() -> None:
    declared = re.search(r"const TYPES = \[(.*?)\];", LIVE.read_text(), re.S)
    assert declared is not None
    taken = set(re.findall(r'"([a-z_.]+)"', declared.group(1)))
    assert taken == set(EVENT_TYPES) - {"token.revoked"}  # a revoked token ends the stream
