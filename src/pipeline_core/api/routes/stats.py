"""``/dags/:dag_id/stats`` and ``/metrics`` (a JSON snapshot, Prometheus or OpenMetrics text)."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import Request, Response, envelope
from pipeline_core.api.openapi.operation import DAG, Operation, Param
from pipeline_core.api.openapi.parts import DATE_TIME, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.serialize import run_dict, with_mapped
from pipeline_core.exposition import OPENMETRICS_TYPE, PROMETHEUS_TYPE, exposition
from pipeline_core.history import History
from pipeline_core.metrics import MetricsCollector
from pipeline_core.store.base import Store

STATS = Operation(
    "get_dag_stats",
    "dags",
    "DAG statistics",
    "Run counts by state, success rate and duration percentiles of a DAG, and per-task "
    "failure and retry rates, over an optional time range.",
    envelope_of(ref("Stats")),
    (*DAG, Param("since", schema=DATE_TIME), Param("until", schema=DATE_TIME)),
    read=True,
)
GRID = Operation(
    "get_dag_grid",
    "dags",
    "A DAG's grid: its newest runs with their task instances",
    "The newest runs by logical date (`limit`, default 25), newest first, each with its task "
    "instances (a mapped task's with its instances counted by state) — what the dashboard's "
    "grid shows, read at once.",
    envelope_of({"type": "array", "items": ref("RunDetail")}),
    (*DAG, Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 100})),
    read=True,
)
METRICS = Operation(
    "get_metrics",
    "metrics",
    "Metrics as a JSON snapshot",
    "Counters, gauges and histograms of the engine, scheduler and pools. A scraper that "
    "asks for text (Accept: text/plain or application/openmetrics-text) is answered as "
    "/metrics/prometheus or /metrics/openmetrics would answer it.",
    envelope_of(ref("Metrics")),
    read=True,
)
TEXT = {"schema": {"type": "string"}}
PROMETHEUS = Operation(
    "get_metrics_prometheus",
    "metrics",
    "Metrics as Prometheus text",
    "The same metrics in the Prometheus text exposition format 0.0.4.",
    {},
    read=True,
    json=False,
    media={"text/plain": TEXT},
)
OPENMETRICS = Operation(
    "get_metrics_openmetrics",
    "metrics",
    "Metrics as OpenMetrics text",
    "The same metrics in the OpenMetrics 1.0 text format.",
    {},
    read=True,
    json=False,
    media={"application/openmetrics-text": TEXT},
)


def dag_stats(store: Store) -> Callable[[Request], Response]:
    history = History(store)

    def handle(request: Request) -> Response:
        dag_id = request.params["dag_id"]
        store.dags.get_dag(dag_id)
        since, until = request.args.get("since"), request.args.get("until")
        return envelope(history.dag_stats(dag_id, since, until))

    return handle


def dag_grid(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        dag_id = request.params["dag_id"]
        store.dags.get_dag(dag_id)
        shown = store.tasks.grid(dag_id, request.args.get("limit", 25))
        data = [{**run_dict(g.run), "task_instances": with_mapped(g.task_instances, g.mapped)}
                for g in shown]  # fmt: skip
        return envelope(data)

    return handle


def metrics(collector: MetricsCollector | None, wanted: str = "") -> Callable[[Request], Response]:
    """The metrics in the ``wanted`` format; without one, in JSON unless the client's
    ``Accept`` asks for a text format (as Prometheus scrapers do)."""
    source = collector or MetricsCollector()

    def handle(request: Request) -> Response:
        accept = request.header("accept") or ""
        chosen = wanted
        if not chosen and "application/openmetrics-text" in accept:
            chosen = "openmetrics"
        elif not chosen and "text/plain" in accept:
            chosen = "prometheus"
        if chosen == "openmetrics":
            text = exposition(source.snapshot(), "openmetrics")
            return Response(200, text.encode(), content_type=OPENMETRICS_TYPE)
        if chosen == "prometheus":
            text = exposition(source.snapshot(), "prometheus")
            return Response(200, text.encode(), content_type=PROMETHEUS_TYPE)
        return envelope(source.snapshot())

    return handle
