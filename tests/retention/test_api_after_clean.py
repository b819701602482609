"""What the API answers after a clean-up: a deleted run is gone (not served from the kept
answers of finished runs), the DAG's statistics read the same, and each deleted run is told
by a ``run.deleted`` event."""

from __future__ import annotations

from pathlib import Path

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.retention.clean import Cleaner
from pipeline_core.store.types import DagRecord, EventQuery
from tests.api.inprocess import AppClient
from tests.retention.history import BASE, fill
from tests.retention.test_clean import CUT


def test_the_api_after_a_clean_up(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db")
    for dag in range(3):
        store.dags.upsert_dag(DagRecord(f"d{dag}", task_count=4))
    server = APIServer(APIServerOptions(store=store, port=0)).start()
    try:
        client = AppClient(server)
        status, _, old = client.request("GET", "/api/v1/dags/d0/runs/r1")
        assert status == 200 and old["data"]["state"] == "success"
        assert client.request("GET", "/api/v1/dags/d0/runs/r1")[0] == 200  # kept, finished
        _, _, before = client.request("GET", "/api/v1/dags/d0/stats")
        _, _, since = client.request("GET", "/api/v1/dags/d0/stats?since=2026-01-02T00:00:00Z")
        _, _, runs = client.request("GET", "/api/v1/dags/d0/runs?limit=1000")
        assert runs["meta"]["total"] == 100
        seq = store.events.read_events(EventQuery(after_seq=0, limit=1_000_000))[-1].seq
        report = Cleaner(store, CUT).run(BASE)
        assert report.runs == 180
        status, _, gone = client.request("GET", "/api/v1/dags/d0/runs/r1")
        assert status == 404 and "r1" in gone["error"]["message"]
        assert client.request("GET", "/api/v1/dags/d0/stats")[2] == before
        since_after = client.request("GET", "/api/v1/dags/d0/stats?since=2026-01-02T00:00:00Z")
        assert since_after[2] == since
        assert client.request("GET", "/api/v1/dags/d0/runs?limit=1000")[2]["meta"]["total"] == 40
        told = store.events.read_events(EventQuery(after_seq=seq, types=("run.deleted",)))
        assert len(told) == 180
        assert told[0].to_dict()["reason"] == "retention" and told[0].dag_id == "d0"
    finally:
        server.stop()
        store.close()
