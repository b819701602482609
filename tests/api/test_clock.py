"""The API reads the time from the clock it is given, never the wall: next fire times, the
scheduler heartbeat's age in /health, and when a kept listing expires."""

from __future__ import annotations

from datetime import timedelta

from pipeline_core.engine.remote import RemoteControl
from pipeline_core.model import TriggerRequest
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord
from tests.api.conftest import Client, serve
from tests.engine.conftest import ManualClock


def test_next_fire_times_and_the_listing_cache_follow_the_given_clock(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'clock.db'}")
    store.dags.upsert_dag(DagRecord("daily", schedule="0 6 * * *", task_count=1))
    clock = ManualClock()  # 2026-01-01T00:00Z
    server = serve(store, clock=clock)
    try:
        client = Client(server.port)
        listed = client.request("GET", "/api/v1/dags")[2]["data"][0]
        assert listed["next_run_date"] == "2026-01-01T06:00:00.000000Z"
        clock.advance(timedelta(hours=7).total_seconds())  # past the fire time: not kept
        listed = client.request("GET", "/api/v1/dags")[2]["data"][0]
        assert listed["next_run_date"] == "2026-01-02T06:00:00.000000Z"
        one = client.request("GET", "/api/v1/dags/daily")[2]["data"]
        assert one["next_run_date"] == "2026-01-02T06:00:00.000000Z"
    finally:
        server.stop()
        store.close()


def test_a_remote_trigger_and_a_folder_sync_stamp_the_given_clock(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'clock.db'}")
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.yaml").write_text("tasks: {t: {}}\n")
    (folder / "bad.yaml").write_text("tasks: [\n")
    clock = ManualClock()
    try:
        DagSync(store, folder, clock=clock.now).refresh()
        assert store.dags.get_dag("a").last_parsed_at == clock.now()
        assert store.dags.list_import_errors()[0].seen_at == clock.now()
        run = RemoteControl(store, clock=clock).trigger(TriggerRequest("a", run_id="r"))
        assert run.queued_at == clock.now() and run.logical_date == clock.now()
    finally:
        store.close()
