"""A metrics snapshot in the Prometheus text format (0.0.4) or OpenMetrics 1.0.

The snapshot keeps its own names (``task.duration_ms``, in milliseconds); the exposition
follows Prometheus's conventions: base units (a ``*_ms`` histogram becomes ``*_seconds``,
its values and bucket bounds divided by 1,000), ``_total`` on counters, a ``# HELP`` line on
every family, and for OpenMetrics ``# UNIT`` lines, counter families named without ``_total``
and the closing ``# EOF``.
"""

from __future__ import annotations

from typing import Any, Literal

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Format = Literal["prometheus", "openmetrics"]

HELP = {
    "dag_run.created": "DAG runs created",
    "dag_run.started": "DAG runs that started running",
    "dag_run.completed": "DAG runs that finished successfully",
    "dag_run.failed": "DAG runs that failed",
    "dag_run.cancelled": "DAG runs that were cancelled",
    "dag_run.duration_ms": "Duration of finished DAG runs",
    "task.started": "Task tries started",
    "task.completed": "Task tries that succeeded",
    "task.failed": "Task tries that failed",
    "task.retried": "Task tries that failed and were queued again",
    "task.killed": "Task tries killed, by reason",
    "task.duration_ms": "Duration of finished task tries",
    "scheduler.tick_duration_ms": "Duration of one scheduler tick",
    "scheduler.heartbeat": "Scheduler heartbeats",
    "scheduler.runs_created": "DAG runs the scheduler created",
    "engine.heartbeat": "Engine heartbeats",
    "pool.slots_used": "Pool slots taken by running tries",
    "pool.slots_available": "Pool slots free",
    "pool.queued": "Task instances waiting for a pool slot",
    "xcom.size_bytes": "Size of XCom values pushed",
    "workers.busy": "Worker processes running a try",
    "workers.idle": "Worker processes waiting for a try",
    "worker.restarts": "Worker processes started again after they ended",
}


def exposition(snapshot: dict[str, Any], fmt: Format, prefix: str = "pipeline_core") -> str:
    """``snapshot`` (``MetricsCollector.snapshot()``) as the text of format ``fmt``."""
    open_metrics = fmt == "openmetrics"
    lines: list[str] = []
    for kind, items in (("counter", snapshot["counters"]), ("gauge", snapshot["gauges"])):
        for name in sorted({item["name"] for item in items}):
            family = metric_name(prefix, name)
            sample = f"{family}_total" if kind == "counter" else family
            header = family if open_metrics else sample
            lines += [f"# HELP {header} {_help(name)}", f"# TYPE {header} {kind}"]
            if open_metrics and family.endswith("_bytes"):
                lines.append(f"# UNIT {header} bytes")
            lines += [
                f"{sample}{_labels(item['labels'])} {_number(item['value'])}"
                for item in items
                if item["name"] == name
            ]
    for name in sorted({item["name"] for item in snapshot["histograms"]}):
        family, scale = _base_unit(metric_name(prefix, name))
        lines += [f"# HELP {family} {_help(name)}", f"# TYPE {family} histogram"]
        if open_metrics and family.endswith("_seconds"):
            lines.append(f"# UNIT {family} seconds")
        for item in (i for i in snapshot["histograms"] if i["name"] == name):
            for bound, count in item["buckets"].items():
                le = bound if bound == "+Inf" else _number(float(bound) * scale)
                lines.append(f"{family}_bucket{_labels({**item['labels'], 'le': le})} {count}")
            labels = _labels(item["labels"])
            lines.append(f"{family}_sum{labels} {_number(item['sum'] * scale)}")
            lines.append(f"{family}_count{labels} {item['count']}")
    if open_metrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _base_unit(family: str) -> tuple[str, float]:
    """A family in milliseconds renamed to seconds, with the factor its values take."""
    if family.endswith("_ms"):
        return family.removesuffix("_ms") + "_seconds", 0.001
    return family, 1.0


def _help(name: str) -> str:
    text = HELP.get(name, f"{name} (recorded by a task or plug-in)")
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def metric_name(prefix: str, name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return f"{prefix}_{cleaned}" if prefix else cleaned


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    parts = []
    for key, value in labels.items():
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{metric_name("", key)}="{escaped}"')
    return "{" + ",".join(parts) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
