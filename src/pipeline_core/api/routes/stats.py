"""``/dags/:dag_id/stats`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import Request, Response, bad_request, envelope
from pipeline_core.api.params import date
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
        if since and until and since > until:
            raise bad_request("'since' is after 'until'")
        return envelope(history.dag_stats(dag_id, since, until))

    return handle


def metrics(collector: MetricsCollector | None) -> Callable[[Request], Response]:
    source = collector or MetricsCollector()

    def handle(request: Request) -> Response:
        unknown = sorted(set(request.query) - {"format"})
        if unknown:
            raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
        wanted = (request.query.get("format") or [""])[-1]
        if wanted not in ("", "json", "prometheus"):
            raise bad_request("format must be json or prometheus")
        accept = request.header("accept") or ""
        if wanted == "prometheus" or (not wanted and "text/plain" in accept):
            response = Response(200, source.prometheus().encode())
            response.content_type = "text/plain; version=0.0.4; charset=utf-8"
            return response
        return envelope(source.snapshot())

    return handle
