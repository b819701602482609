"""``/dags/:dag_id/stats`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import Request, Response, bad_request, envelope
from pipeline_core.api.params import date
from pipeline_core.exposition import OPENMETRICS_TYPE, PROMETHEUS_TYPE, exposition
from pipeline_core.history import History
from pipeline_core.metrics import MetricsCollector
from pipeline_core.store.base import Store


def dag_stats(store: Store) -> Callable[[Request], Response]:
    history = History(store)

    def handle(request: Request) -> Response:
        unknown = sorted(set(request.query) - {"since", "until"})
        if unknown:
            raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
        dag_id = request.params["dag_id"]
        store.get_dag(dag_id)
        since, until = date(request, "since"), date(request, "until")
        return envelope(history.dag_stats(dag_id, since, until))

    return handle


FORMATS = ("json", "prometheus", "openmetrics")


def metrics(collector: MetricsCollector | None) -> Callable[[Request], Response]:
    source = collector or MetricsCollector()

    def handle(request: Request) -> Response:
        unknown = sorted(set(request.query) - {"format"})
        if unknown:
            raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
        given = request.query.get("format") or []
        if any(value not in FORMATS for value in given):
            raise bad_request(f"format must be one of {', '.join(FORMATS)}")
        wanted = given[-1] if given else ""
        accept = request.header("accept") or ""
        if not wanted and "application/openmetrics-text" in accept:
            wanted = "openmetrics"
        elif not wanted and "text/plain" in accept:
            wanted = "prometheus"
        if wanted == "openmetrics":
            text = exposition(source.snapshot(), "openmetrics")
            return Response(200, text.encode(), content_type=OPENMETRICS_TYPE)
        if wanted == "prometheus":
            text = exposition(source.snapshot(), "prometheus")
            return Response(200, text.encode(), content_type=PROMETHEUS_TYPE)
        return envelope(source.snapshot())

    return handle
