"""History retention on every backend: which runs are old, a run deleted with every row of its
own, a retried run kept, statistics equal through the roll-ups, and the event log trimmed
from its start."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline_core.errors import NotFound
from pipeline_core.model import DagRun, IdempotencyKey, TaskChange, TaskKey, TaskSpec
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.retention import Cleaned, OldHistory
from pipeline_core.store.sql.rollups import kept_duration
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.store.helpers import BASE, new_run
from tests.store.test_conformance_events import FakeClock

HOUR = timedelta(hours=1)


def task(store, dag_id, run_id, task_id, new, old, **fields):  # type: ignore[no-untyped-def]
    change = TaskChange(TaskKey(dag_id, run_id, task_id), TaskState(old), TaskState(new), **fields)
    store.tasks.transition_tasks([change])


def finished(  # type: ignore[no-untyped-def]
    store, clock, run_id, *, dag_id="etl", day=0, ms=400, state=RunState.SUCCESS, fail=False,
    retry=False, idempotency=None,
):  # fmt: skip
    """A run of tasks ``a`` and ``b`` that took ``ms``: ``a`` retried once with ``retry``,
    ``a`` failed with ``fail``, ``b`` never started."""
    run = DagRun(dag_id, run_id, RunState.QUEUED, "manual", BASE + timedelta(days=day))
    store.runs.create_run(run, [TaskSpec("a", max_tries=2), TaskSpec("b")], idempotency=idempotency)
    store.runs.transition_run(dag_id, run_id, RunState.QUEUED, RunState.RUNNING)
    task(store, dag_id, run_id, "a", "running", "queued", try_number=1)
    if retry:
        clock.advance(milliseconds=ms // 4)
        task(store, dag_id, run_id, "a", "up_for_retry", "running")
        task(store, dag_id, run_id, "a", "queued", "up_for_retry")
        task(store, dag_id, run_id, "a", "running", "queued", try_number=2)
    clock.advance(milliseconds=ms // 2)
    task(store, dag_id, run_id, "a", "failed" if fail else "success", "running")
    clock.advance(milliseconds=ms - ms // 2 - (ms // 4 if retry else 0))
    store.runs.transition_run(dag_id, run_id, RunState.RUNNING, state)


def count(store, table, dag_id, run_id):  # type: ignore[no-untyped-def]
    sql = f"SELECT COUNT(*) FROM {table} WHERE dag_id = ? AND run_id = ?"
    return store.sql.read(lambda tx: tx.scalar(sql, (dag_id, run_id)))


def test_old_runs_are_finished_runs_that_ended_before_the_cut(store):
    clock = store.clock = FakeClock()
    for i, state in enumerate([RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED] * 2):
        finished(store, clock, f"r{i}", day=i, state=state)
        clock.advance(hours=1)
    finished(store, clock, "o", dag_id="other")
    new_run(store, run_id="waiting", day=9)  # queued: never old
    new_run(store, run_id="running", day=10)
    store.runs.transition_run("etl", "running", RunState.QUEUED, RunState.RUNNING)
    cut = BASE + 3 * HOUR
    old = store.retention.old_runs(cut)
    assert [(r.dag_id, r.run_id) for r in old] == [("etl", "r0"), ("etl", "r1"), ("etl", "r2")]
    first = store.retention.old_runs(cut, limit=2)
    rest = store.retention.old_runs(cut, after=first[-1].pk)
    assert first + rest == old
    clock.advance(days=1)
    everything = store.retention.old_runs(clock.now, limit=100)
    assert [r.run_id for r in everything] == ["r0", "r1", "r2", "r3", "r4", "r5", "o"]
    assert [r.run_id for r in store.retention.old_runs(clock.now, dag_ids=["other"])] == ["o"]
    assert store.retention.count_old(cut) == OldHistory(runs=3, task_instances=6)
    assert store.retention.count_old(clock.now, dag_ids=["nope"]) == OldHistory(0, 0)


def test_a_run_is_deleted_with_every_row_of_its_own(store):
    clock = store.clock = FakeClock()
    finished(store, clock, "old", idempotency=IdempotencyKey("k1", "f", 3600))
    finished(store, clock, "young")
    for run_id in ("old", "young"):
        store.task_data.set_xcom(TaskKey("etl", run_id, "a"), "return_value", {"n": 1})
        store.task_data.append_log(TaskKey("etl", run_id, "a"), 1, "a line\n")

    def extra(tx, _):  # type: ignore[no-untyped-def]
        for run_id in ("old", "young"):
            tx.run(
                "INSERT INTO notifications (id, seq, event, dag_id, run_id, rule, target_kind, "
                "target, payload, state, attempts, created_at, due_ms, lease_ms) VALUES "
                "(?, 1, 'run.failed', 'etl', ?, 'r', 'webhook', 'http://x', '{}', 'delivered', "
                "1, '2026-01-01T00:00:00.000000Z', 0, 0)",
                (f"n-{run_id}", run_id),
            )
            tx.run(
                "INSERT INTO notification_attempts (notification_id, number, at, status, "
                "duration_ms) VALUES (?, 1, '2026-01-01T00:00:00.000000Z', 200, 5)",
                (f"n-{run_id}",),
            )
            tx.run(
                "INSERT INTO run_deadlines (dag_id, run_id, deadline_at, missed_at) VALUES "
                "('etl', ?, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
                (run_id,),
            )

    store.sql.write(extra)
    tables = ("xcom", "task_logs", "log_sizes", "idempotency_keys", "run_deadlines",
              "notifications", "events")  # fmt: skip
    before = {t: count(store, t, "etl", "young") for t in tables}
    [old, young] = store.retention.old_runs(clock.now + HOUR)
    [archived] = store.retention.run_rows([old])
    assert (archived["dag_id"], archived["run_id"]) == ("etl", "old")
    rows = archived["tables"]
    assert rows["dag_runs"][0]["state"] == "success"
    assert [r["task_id"] for r in rows["task_instances"]] == ["a", "b"]
    assert rows["xcom"][0]["key"] == "return_value" and "a line" in rows["task_logs"][0]["data"]
    assert rows["notification_attempts"][0]["status"] == 200
    assert {e["type"] for e in rows["events"]} >= {"run.state_changed", "task.state_changed"}
    assert all(rows[t] for t in tables)
    cleaned = store.retention.delete_runs([old], clock.now + HOUR)
    assert cleaned == Cleaned((old,), sum(len(r) for r in rows.values()))
    with pytest.raises(NotFound):
        store.runs.get_run("etl", "old")
    assert all(count(store, t, "etl", "old") == 0 for t in tables if t != "events")
    told = store.events.read_events(EventQuery(run_id="old"))
    assert [(e.type, e.to_dict()["state"]) for e in told] == [("run.deleted", "success")]
    assert store.sql.read(lambda tx: tx.scalar("SELECT COUNT(*) FROM notification_attempts")) == 1
    assert {t: count(store, t, "etl", "young") for t in tables} == before
    assert store.runs.find_idempotency_key("etl", "k1") is None
    assert store.retention.delete_runs([old], clock.now + HOUR) == Cleaned((), 0)
    assert store.retention.run_rows([old]) == []
    assert store.runs.get_run("etl", "young").run_id == young.run_id


def test_a_run_retried_after_it_was_found_is_kept(store):
    clock = store.clock = FakeClock()
    finished(store, clock, "r0")
    found = store.retention.old_runs(clock.now + HOUR)
    store.runs.transition_run("etl", "r0", RunState.SUCCESS, RunState.QUEUED)  # a clear
    assert store.retention.delete_runs(found, clock.now + HOUR) == Cleaned((), 0)
    assert store.runs.get_run("etl", "r0").state is RunState.QUEUED
    assert store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl")).total == 2


def everything_said(store):  # type: ignore[no-untyped-def]
    windows = [
        {},
        {"since": BASE + timedelta(days=1)},
        {"until": BASE + timedelta(days=2) - timedelta(microseconds=1)},
        {"since": BASE + timedelta(days=1), "until": BASE + timedelta(days=3, hours=23)},
    ]
    return [
        (store.runs.run_stats(dag_id, **w), store.tasks.task_stats(dag_id, **w))
        for dag_id in ("etl", "other")
        for w in windows
    ]


def test_statistics_are_the_same_after_cleanup(store):
    """Counts, rates, durations and their percentiles, and per-task figures — over the whole
    history and over windows of whole days — read the same before and after a clean-up that
    takes some runs of a day and leaves others (durations under a second are kept exactly)."""
    clock = store.clock = FakeClock()
    states = [RunState.SUCCESS, RunState.FAILED, RunState.SUCCESS, RunState.CANCELLED]
    for i in range(24):
        finished(
            store, clock, f"r{i}", day=i // 6, ms=100 + (i * 37) % 800,
            state=states[i % 4], fail=i % 5 == 0, retry=i % 3 == 0,
        )  # fmt: skip
        clock.advance(hours=1)
        if i % 4 == 0:
            finished(store, clock, f"o{i}", dag_id="other", day=i // 4, ms=50 + i)
    new_run(store, run_id="waiting", day=3)
    before = everything_said(store)
    cut = BASE + timedelta(hours=15)  # half the runs, ending part-way through days
    found = store.retention.old_runs(cut, limit=5)
    while found:
        store.retention.delete_runs(found, cut)
        found = store.retention.old_runs(cut, after=found[-1].pk, limit=5)
    assert 0 < store.retention.count_old(BASE + timedelta(days=9)).runs < 30
    assert everything_said(store) == before
    later = BASE + timedelta(days=9)
    store.retention.delete_runs(store.retention.old_runs(later, limit=1000), later)
    assert store.retention.count_old(BASE + timedelta(days=9)).runs == 0
    assert everything_said(store) == before


def test_durations_past_a_second_keep_three_significant_digits(store):
    clock = store.clock = FakeClock()
    for i, ms in enumerate([12_345, 12_355, 98_765_432, 1_004]):
        finished(store, clock, f"r{i}", ms=ms)
    before = store.runs.run_stats("etl")
    store.retention.delete_runs(store.retention.old_runs(clock.now + HOUR), clock.now + HOUR)
    after = store.runs.run_stats("etl")
    assert (after.total, after.by_state, after.duration_avg) == (
        before.total, before.by_state, before.duration_avg,
    )  # fmt: skip
    assert (after.duration_min, after.duration_max) == (1_004, 98_765_432)
    assert before.duration_p50 == 12_345 and after.duration_p50 == kept_duration(12_345) == 12_300
    assert after.duration_p99 == 98_800_000
    assert [kept_duration(ms) for ms in (0, 7, 999, 1_005, 12_355)] == [0, 7, 999, 1_010, 12_400]


def test_trim_takes_the_oldest_events_and_stops_at_a_young_one(store):
    clock = store.clock = FakeClock()
    for i in range(5):
        new_run(store, run_id=f"r{i}", tasks=())
        clock.advance(hours=1)
    seqs = [e.seq for e in store.events.read_events(EventQuery())]
    assert len(seqs) == 5
    assert store.retention.trim(BASE + timedelta(minutes=90), limit=1) == 1
    assert store.retention.trim(BASE + timedelta(minutes=90)) == 1
    assert store.retention.trim(BASE + timedelta(minutes=90)) == 0
    assert [e.seq for e in store.events.read_events(EventQuery())] == seqs[2:]
    assert store.retention.trim(BASE + timedelta(days=1)) == 3
    assert store.events.read_events(EventQuery()) == []
