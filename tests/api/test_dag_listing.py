"""``GET /api/v1/dags`` shows each DAG's next run and asset schedule from the listing's
one read: no DAG's definition is read whole for it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_core.store.types import DagRecord
from tests.api.inprocess import AppClient

ASSETS = {"assets": "s3://raw & s3://clean", "collapse": True}


def test_a_page_of_scheduled_dags_reads_no_definition(
    store: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        definition = {"tasks": [{"task_id": "x"}], "start_date": "2030-01-01T00:00:00Z"}
        store.dags.upsert_dag(DagRecord(f"hourly{n}", schedule="0 * * * *",
                                        definition_hash=f"h{n}", definition=definition))  # fmt: skip
    ended = {"tasks": [], "start_date": "2020-01-01T00:00:00Z", "end_date": "2020-02-01T00:00:00Z"}
    store.dags.upsert_dag(DagRecord("ended", schedule="@daily", definition=ended))
    store.dags.upsert_dag(DagRecord("on_data", definition={"tasks": [], "assets": ASSETS}))
    read_whole: list[str] = []
    real = store.dags.get_dag

    def get_dag(dag_id: str) -> DagRecord:
        read_whole.append(dag_id)
        return real(dag_id)

    monkeypatch.setattr(store.dags, "get_dag", get_dag)
    status, _, body = AppClient(server).request("GET", "/api/v1/dags?limit=100")
    assert status == 200 and read_whole == []
    listed = {d["dag_id"]: d for d in body["data"]}
    assert listed["hourly0"]["next_run_date"] == "2030-01-01T00:00:00.000000Z"
    assert listed["ended"]["next_run_date"] is None  # past its end date
    assert listed["on_data"]["asset_schedule"] == ASSETS
    assert listed["hourly0"]["asset_schedule"] is None
