"""DAG versions in every store: kept as a DAG's definition changes (with its file's text),
listed newest first, read by hash or prefix, kept when the DAG's file goes away; a run
records its version and a switch to another adds the tasks it brings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline_core.errors import InvalidRequest, NotFound
from pipeline_core.events import Event
from pipeline_core.model import SwitchVersion, TaskSpec, new_run
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.store.helpers import BASE, dag

A = "a" * 64
B = "abcdef" + "1" * 58
C = "abcdef" + "2" * 58


def _upsert(store, version, source, minutes, **fields):  # type: ignore[no-untyped-def]
    definition = {"tasks": [{"task_id": t} for t in fields.pop("tasks", ("x",))]}
    record = dag("etl", definition=definition, definition_hash=version,
                 last_parsed_at=BASE + timedelta(minutes=minutes), fileloc="/dags/etl.yaml",
                 task_count=len(definition["tasks"]), **fields)  # fmt: skip
    return store.dags.upsert_dag(record, source=source)


def test_each_distinct_definition_is_a_version_with_its_text_and_first_seen_time(store):
    _upsert(store, A, "v1\n", 0)
    _upsert(store, A, "v1 with a comment\n", 1)  # same definition: same version
    _upsert(store, B, "v2\n", 2, tasks=("x", "y"))
    _upsert(store, A, "v1 again\n", 3)  # back to the first: it keeps its time and text
    listed = store.dags.list_versions("etl")
    assert [v.version for v in listed.items] == [B, A] and listed.total == 2
    assert [v.task_count for v in listed.items] == [2, 1]
    assert listed.items[0].source is None  # a listing leaves the text out
    first = store.dags.get_version("etl", A)
    assert (first.source, first.first_seen, first.fileloc) == ("v1\n", BASE, "/dags/etl.yaml")
    assert first.definition == {"tasks": [{"task_id": "x"}]}
    assert store.dags.get_version("etl", B[:6]).version == B


def test_a_version_is_named_by_a_unique_prefix_of_six_characters_or_more(store):
    _upsert(store, B, "b", 0)
    _upsert(store, C, "c", 1)
    with pytest.raises(InvalidRequest, match="several versions"):
        store.dags.get_version("etl", "abcdef")
    with pytest.raises(NotFound):
        store.dags.get_version("etl", "abcde%")  # a LIKE wildcard is only a character
    with pytest.raises(InvalidRequest, match="at least 6"):
        store.dags.get_version("etl", "abc")
    assert store.dags.get_version("etl", C[:8]).version == C
    with pytest.raises(NotFound, match="no version"):
        store.dags.get_version("etl", "f" * 10)
    with pytest.raises(NotFound, match="no DAG"):
        store.dags.list_versions("nope")


def test_versions_stay_when_the_dag_is_gone_from_the_folder(store):
    _upsert(store, A, "v1", 0)
    store.dags.deactivate_missing_dags([])
    assert store.dags.get_version("etl", A).source == "v1"


def test_a_run_records_its_version_and_a_switch_adds_the_tasks_it_brings(store):
    _upsert(store, A, "v1", 0)
    made = [new_run("etl", (TaskSpec("x"),), now=BASE, run_id=r, dag_version=A, priority=p)
            for r, p in (("one", 0), ("two", 3))]  # fmt: skip
    for write in made:  # PostgreSQL: the first in one call, the second too
        store.runs.apply([write], now=BASE)
    assert {store.runs.get_run("etl", r).dag_version for r in ("one", "two")} == {A}
    assert store.runs.get_run("etl", "two").priority == 3
    store.runs.apply([SwitchVersion("etl", "one", B, (TaskSpec("y", max_tries=2),))], now=BASE)
    assert store.runs.get_run("etl", "one").dag_version == B
    tis = store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl", run_id="one"))
    assert [(t.task_id, t.state.value, t.max_tries) for t in tis.items] == [
        ("x", "queued", 1),
        ("y", "queued", 2),
    ]
    events: list[Event] = store.events.read_events(EventQuery(types=("run.version_changed",)))
    assert [(e.payload["previous_version"], e.payload["added_tasks"]) for e in events] == [
        (A, ["y"])
    ]
    with pytest.raises(NotFound):
        store.runs.apply([SwitchVersion("etl", "nope", B)], now=BASE)
