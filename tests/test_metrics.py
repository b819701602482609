import json
import logging
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline_core.exposition import exposition
from pipeline_core.metrics import (
    MetricsCollector,
    callback_exporter,
    json_file_exporter,
    log_summary_exporter,
    timer,
)
from pipeline_core.model import TriggerRequest


def test_counters_gauges_and_labels():
    m = MetricsCollector()
    m.counter("task.started", dag_id="a")
    m.counter("task.started", 2, dag_id="a")
    m.counter("task.started", dag_id="b")
    m.gauge("pool.slots_used", 3, pool="default_pool")
    m.gauge("pool.slots_used", 1, pool="default_pool")
    snap = m.snapshot()
    assert snap["counters"] == [
        {"name": "task.started", "labels": {"dag_id": "a"}, "value": 3.0},
        {"name": "task.started", "labels": {"dag_id": "b"}, "value": 1.0},
    ]
    assert snap["gauges"] == [
        {"name": "pool.slots_used", "labels": {"pool": "default_pool"}, "value": 1.0}
    ]


def test_histogram_and_quantile_estimates():
    m = MetricsCollector(buckets=(10, 20, 50, 100))
    for value in range(1, 101):  # 1..100
        m.histogram("task.duration_ms", value)
    [h] = m.snapshot()["histograms"]
    assert (h["count"], h["sum"], h["min"], h["max"]) == (100, 5050.0, 1.0, 100.0)
    assert h["buckets"] == {"10": 10, "20": 20, "50": 50, "100": 100, "+Inf": 100}
    assert h["p50"] == pytest.approx(50, abs=1)
    assert h["p90"] == pytest.approx(90, abs=5)
    assert h["p99"] == pytest.approx(99, abs=5)


def test_timer_records_milliseconds():
    m = MetricsCollector()
    with m.timer("scheduler.tick_duration_ms"):
        time.sleep(0.02)
    with timer(m, "other_ms", kind="x"):
        pass
    hist = {h["name"]: h for h in m.snapshot()["histograms"]}
    assert 15 <= hist["scheduler.tick_duration_ms"]["sum"] < 1000
    assert hist["other_ms"]["labels"] == {"kind": "x"}


def test_recording_is_thread_safe():
    m = MetricsCollector()

    def work() -> None:
        for _ in range(5000):
            m.counter("n")
            m.histogram("h", 1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = m.snapshot()
    assert snap["counters"][0]["value"] == 40_000
    assert snap["histograms"][0]["count"] == 40_000


def test_bad_values_never_raise():
    m = MetricsCollector()
    m.histogram("h", "not a number")  # type: ignore[arg-type]
    m.gauge("g", object())  # type: ignore[arg-type]
    assert m.snapshot() == {"counters": [], "gauges": [], "histograms": []}


def test_prometheus_exposition_parses_with_the_right_values():
    m = MetricsCollector(buckets=(1, 10))
    m.counter("task.completed", 3, dag_id='we"ird\\dag\nname')
    m.gauge("pool.slots_available", 14, pool="default_pool")
    m.histogram("task.duration_ms", 0.5)
    m.histogram("task.duration_ms", 5)
    m.histogram("task.duration_ms", 50)
    text = m.prometheus()
    assert "# TYPE pipeline_core_task_completed_total counter" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [completed] = families["pipeline_core_task_completed"].samples
    assert completed.value == 3 and completed.labels == {"dag_id": 'we"ird\\dag\nname'}
    assert families["pipeline_core_pool_slots_available"].samples[0].value == 14
    samples = {
        (s.name, s.labels.get("le")): s.value
        for s in families["pipeline_core_task_duration_seconds"].samples
    }
    assert samples[("pipeline_core_task_duration_seconds_bucket", "0.001")] == 1  # 1 ms
    assert samples[("pipeline_core_task_duration_seconds_bucket", "0.01")] == 2
    assert samples[("pipeline_core_task_duration_seconds_bucket", "+Inf")] == 3
    assert samples[("pipeline_core_task_duration_seconds_count", None)] == 3
    assert samples[("pipeline_core_task_duration_seconds_sum", None)] == pytest.approx(0.0555)


def busy_collector() -> MetricsCollector:
    m = MetricsCollector()
    m.counter("task.completed", 3, dag_id="etl")
    m.counter("my.custom_thing")
    m.gauge("pool.slots_available", 14, pool="default_pool")
    m.histogram("task.duration_ms", 12.5, dag_id="etl", task_id="a")
    m.histogram("scheduler.tick_duration_ms", 0.3)
    m.histogram("xcom.size_bytes", 2048)
    return m


def test_the_exposition_follows_prometheus_conventions():
    """What ``promtool check metrics`` asks: base units, HELP on every family, counters
    ending in ``_total``."""
    text = busy_collector().prometheus()
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.documentation, f"{family.name} has no HELP"
        assert not family.name.endswith(("_ms", "_milliseconds")), family.name
    names = {f.name for f in families}
    assert "pipeline_core_scheduler_tick_duration_seconds" in names
    assert "pipeline_core_xcom_size_bytes" in names
    assert "# TYPE pipeline_core_task_completed_total counter" in text
    assert "# HELP pipeline_core_task_completed_total Task tries that succeeded" in text


def test_openmetrics_exposition_parses_strictly():
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    text = exposition(busy_collector().snapshot(), "openmetrics")
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["pipeline_core_task_completed"].type == "counter"
    assert families["pipeline_core_task_duration_seconds"].unit == "seconds"
    [count] = [
        s
        for s in families["pipeline_core_task_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert count.value == 1


def test_json_file_callback_and_log_exporters(tmp_path, caplog):
    m = MetricsCollector()
    m.counter("dag_run.completed", dag_id="x")
    m.histogram("task.duration_ms", 12)
    path = tmp_path / "metrics.json"
    exporter = json_file_exporter(m, path, interval=0.05).start()
    received: list[dict] = []
    callback = callback_exporter(m, received.append, interval=0.05).start()
    with caplog.at_level(logging.INFO, logger="pipeline_core.metrics"):
        summary = log_summary_exporter(m, interval=3600).start()
        summary.stop()
    exporter.stop()
    callback.stop()
    data = json.loads(path.read_text())
    assert data["counters"][0]["name"] == "dag_run.completed"
    assert received and received[-1]["histograms"][0]["count"] == 1
    assert "metric dag_run.completed" in caplog.text and "task.duration_ms" in caplog.text


def test_a_failing_exporter_is_logged_and_keeps_going(caplog):
    m = MetricsCollector()
    calls = []

    def broken(snapshot: dict) -> None:
        calls.append(1)
        raise RuntimeError("exporter down")

    exporter = callback_exporter(m, broken, interval=0.02).start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    exporter.stop()
    assert len(calls) >= 3
    assert "metrics exporter failed" in caplog.text


def test_engine_reports_metrics(tmp_path):
    from pipeline_core.dag.yaml_loader import load_dag_text
    from pipeline_core.engine import Engine
    from pipeline_core.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    dag = load_dag_text(
        "dag_id: m\ntasks:\n  a: {type: noop}\n  b: {type: shell, command: 'echo 1', depends_on: [a]}\n"
    )
    m = MetricsCollector()
    done = threading.Event()
    store.add_listener(
        lambda events: (
            any(
                e.payload.get("new_state") == "success" and e.type == "run.state_changed"
                for e in events
            )
            and done.set()
        )
    )
    engine = Engine(store, {"m": dag}, metrics=m).start()
    engine.trigger(TriggerRequest("m"))
    assert done.wait(10)
    engine.stop()
    counters = {
        (c["name"], c["labels"].get("task_id")): c["value"] for c in m.snapshot()["counters"]
    }
    assert counters[("task.started", "a")] == 1 and counters[("task.completed", "b")] == 1
    assert counters[("dag_run.completed", None)] == 1
    names = {h["name"] for h in m.snapshot()["histograms"]}
    assert {"task.duration_ms", "dag_run.duration_ms", "xcom.size_bytes"} <= names
    gauges = {g["name"] for g in m.snapshot()["gauges"]}
    assert {"pool.slots_used", "pool.slots_available", "pool.queued"} <= gauges
    store.close()
