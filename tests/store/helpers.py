"""Small builders for store tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import DagRecord

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def dag(dag_id: str = "etl", **fields) -> DagRecord:  # type: ignore[no-untyped-def]
    return DagRecord(dag_id=dag_id, **fields)


def new_run(
    store, dag_id="etl", run_id="r1", *, tasks=("a", "b", "c"), day=0, run_type="manual", **fields
):  # type: ignore[no-untyped-def]
    run = DagRun(
        dag_id=dag_id,
        run_id=run_id,
        state=RunState.QUEUED,
        run_type=run_type,
        logical_date=BASE + timedelta(days=day),
        **fields,
    )
    return store.runs.create_run(run, [TaskSpec(t, max_tries=2) for t in tasks])


def key(task_id: str = "a", run_id: str = "r1", dag_id: str = "etl") -> TaskKey:
    return TaskKey(dag_id, run_id, task_id)


def move(store, task_id, expected, new, run_id="r1", **fields):  # type: ignore[no-untyped-def]
    change = TaskChange(key(task_id, run_id), TaskState(expected), TaskState(new), **fields)
    return store.tasks.transition_tasks([change])[0]


def _old_history(store, runs: int = 3) -> None:  # type: ignore[no-untyped-def]
    """Runs ``r0``… of ``etl`` (tasks ``a``, ``b``; ``a`` failed in ``r1``) written as a
    schema before version 11 holds them: raw rows, no ``map_index``."""

    def work(tx, _):  # type: ignore[no-untyped-def]
        for i in range(runs):
            day = (BASE + timedelta(days=i)).isoformat()
            end = (BASE + timedelta(days=i, seconds=2)).isoformat()
            pk = tx.scalar(
                "INSERT INTO dag_runs (dag_id, run_id, state, run_type, logical_date, conf, "
                "start_date, end_date, duration_ms) VALUES ('etl', ?, 'running', 'manual', ?, "
                "'{}', ?, NULL, NULL) RETURNING id",
                (f"r{i}", day, day),
            )
            for ordinal, (task_id, state, tries) in enumerate(
                [("a", "failed" if i == 1 else "success", 1), ("b", "queued", 0)]
            ):
                tx.run(
                    "INSERT INTO task_instances (run_pk, ordinal, dag_id, run_id, task_id, "
                    "state, try_number, max_tries, pool, priority_weight, start_date, end_date, "
                    "duration_ms, error) VALUES (?, ?, 'etl', ?, ?, ?, ?, 2, 'default_pool', 1, "
                    "?, ?, ?, NULL)",
                    (pk, ordinal, f"r{i}", task_id, state, tries,
                     day if tries else None, end if tries else None, 2000 if tries else None),
                )  # fmt: skip

    store.sql.write(work)


def upgrading_to_task_totals_counts_the_history(open_at) -> None:  # type: ignore[no-untyped-def]
    """Runs written at schema version 4, before the task totals existed, are counted once
    ``open_at()`` (a store at the newest version) has migrated the database."""
    old = open_at(migrate_to=4)
    _old_history(old)
    old.close()
    store = open_at()
    everything = {"since": BASE - timedelta(days=1), "until": BASE + timedelta(days=9)}
    [a] = store.tasks.task_stats("etl")
    assert (a.runs, a.failure_rate) == (3, 1 / 3)
    assert store.tasks.task_stats("etl") == store.tasks.task_stats("etl", **everything)
    store.close()


def upgrading_to_map_indexes_keeps_every_instance(open_at) -> None:  # type: ignore[no-untyped-def]
    """Task instances written at version 10 are instances ``-1`` after the upgrade, with
    their XComs and logs, and the totals the triggers keep go on counting."""
    old = open_at(migrate_to=10)
    _old_history(old)
    old.sql.write(
        lambda tx, _: tx.run(
            "INSERT INTO xcom (dag_id, run_id, task_id, key, value, size_bytes, timestamp) "
            "VALUES ('etl', 'r0', 'a', 'return_value', '42', 2, ?)",
            (BASE.isoformat(),),
        )
    )
    old.close()
    store = open_at()
    ti = store.tasks.get_task_instance(key("a", "r1"))
    assert (ti.map_index, ti.state, ti.try_number) == (-1, TaskState.FAILED, 1)
    assert store.task_data.get_xcom(key("a", "r0"), "return_value").value == 42
    move(store, "b", "queued", "running", run_id="r0", try_number=1)
    move(store, "b", "running", "success", run_id="r0")
    assert {s.task_id: s.runs for s in store.tasks.task_stats("etl")} == {"a": 3, "b": 1}
    store.close()


def upgrading_to_rollups_lets_old_dags_be_searched(open_at) -> None:  # type: ignore[no-untyped-def]
    """DAGs written at version 16, before the search text existed, are found by ``?q=`` once
    the database is migrated; the history written then reads the same statistics."""
    old = open_at(migrate_to=16)
    old.sql.write(
        lambda tx, _: tx.run(
            "INSERT INTO dags (dag_id, is_paused, is_active, timezone, description, tags, "
            "task_count) VALUES ('Nightly_ETL', ?, ?, 'UTC', 'Loads Orders', '[]', 2)",
            (False, True),
        )
    )
    _old_history(old)
    old.close()
    store = open_at()
    [a] = store.tasks.task_stats("etl")
    assert (a.runs, a.failure_rate) == (3, 1 / 3)
    assert [d.dag_id for d in store.dags.list_dags(search="orders").items] == ["Nightly_ETL"]
    assert store.dags.list_dags(search="nightly_etl").total == 1
    store.close()


def upgrading_to_listings_reads_what_they_show(open_at) -> None:  # type: ignore[no-untyped-def]
    """DAGs written at version 17 list their start, end and asset schedule once the database
    is migrated (a listing reads no definition whole)."""
    old = open_at(migrate_to=17)
    assets = {"condition": "s3://a", "assets": ["s3://a"], "collapse": False}
    definitions = {
        "scheduled": {"tasks": [{"task_id": "x"}], "start_date": "2030-01-01T00:00:00Z",
                      "end_date": None, "assets": assets},
        "plain": {"tasks": []},
    }  # fmt: skip
    for dag_id, definition in definitions.items():
        old.sql.write(
            lambda tx, _, dag_id=dag_id, definition=definition: tx.run(
                "INSERT INTO dags (dag_id, is_paused, is_active, timezone, tags, task_count, "
                "definition) VALUES (?, ?, ?, 'UTC', '[]', 1, ?)",
                (dag_id, False, True, json.dumps(definition)),
            )
        )
    old.sql.write(
        lambda tx, _: tx.run(
            "INSERT INTO dags (dag_id, is_paused, is_active, timezone, tags, task_count) "
            "VALUES ('bare', ?, ?, 'UTC', '[]', 0)",
            (False, True),
        )
    )
    old.close()
    store = open_at()
    listed = {d.dag_id: d.definition for d in store.dags.list_dags().items}
    shown = {"start_date": "2030-01-01T00:00:00Z", "end_date": None, "assets": assets}
    assert listed == {"bare": None, "plain": {}, "scheduled": shown}
    store.close()
