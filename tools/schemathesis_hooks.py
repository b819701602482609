"""Hooks for the contract fuzzer (tests/api/test_contract.py loads them through
``SCHEMATHESIS_HOOKS``).

A followed log (``…/logs?follow=true``) is a stream held until its try ends, which may be
never for a try that waits in a paused DAG: a fuzzer cannot read a whole answer, as with
``/api/v1/events``. Drawn cases that follow are left out, and a case a phase makes without
drawing (coverage) reads the log once instead. tests/api/test_sse.py and
tests/api/test_input_edges.py cover both.
Every other value of every parameter is drawn.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st


@schemathesis.hook
def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
    return not _follows(query)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The cases a phase makes without drawing (coverage) are not filtered: one that
    follows a log asks for it once instead."""
    if _follows(case.query):
        case.query = {**case.query, "follow": "false"}


def _follows(query: dict[str, Any] | None) -> bool:
    follow = (query or {}).get("follow")
    drawn = follow if isinstance(follow, list | tuple) else [follow]  # a repeated parameter
    return any(str(value).lower() in ("true", "1", "yes") for value in drawn)


#: The DAGs of examples/dags with a cron schedule. A backfill needs one: half the draws of a
#: backfill's ``dag_id`` name one of them, so that its body's checks are reached at all.
SCHEDULED_DAGS = ("etl_daily", "hourly_health", "report_weekly")


@schemathesis.hook
def flatmap_path_parameters(context: Any, parameters: Any) -> Any:
    if not _creates_a_backfill(context) or not isinstance(parameters, dict):
        return st.just(parameters)
    named = st.sampled_from(SCHEDULED_DAGS).map(lambda dag_id: {**parameters, "dag_id": dag_id})
    return st.one_of(st.just(parameters), named)


#: A backfill's range must be in order and hold from 1 to --max-backfill-runs fire times: a
#: rule across two fields that a schema cannot state. A drawn range keeps its start (the ends
#: of the supported range included) and ends a week later, so the fuzzer exercises what the
#: operation does rather than its refusal of a reversed, empty or endless range.
BACKFILL_SPAN = timedelta(days=7)


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not _creates_a_backfill(context) or not isinstance(body, dict):
        return body
    try:
        start, _ = _instant(body["from"]), _instant(body["to"])  # a negative case stays one
        end = start + BACKFILL_SPAN
    except (KeyError, TypeError, ValueError, OverflowError):
        return body
    return {**body, "to": end.isoformat()}


def _instant(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _creates_a_backfill(context: Any) -> bool:
    operation = context.operation
    return (
        operation is not None
        and operation.method.upper() == "POST"
        and operation.path.endswith("/backfills")
    )
