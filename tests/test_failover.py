"""Several ``pipeline-core scheduler`` processes on one database: one active, the others
standing by; ``kill -9`` of the active one and a standby takes over — every run completes and
no task's work is done twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline_core.engine.remote import RemoteControl
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery, RunQuery
from tests.conftest import LoggedProcess, poll_until
from tests.notify.receivers import Receiver

pytestmark = pytest.mark.slow
RUNS, TASKS = 4, 4


def dag_text(markers: Path, hook: str) -> str:
    # The marker is written when the work is done, so a try killed with its engine leaves none.
    command = (
        f"sleep 0.4; echo {{{{ try_number }}}} >> {markers}/{{{{ run_id }}}}.{{{{ task_id }}}}"
    )
    tasks = "".join(
        f"  t{i}: {{type: shell, command: {command!r}, retries: 2}}\n" for i in range(TASKS)
    )
    rule = f"notify: [{{on: [task_retrying, run_succeeded], webhook: '{hook}'}}]\n"
    return f"dag_id: work\nmax_active_runs: {RUNS}\n{rule}tasks:\n{tasks}"


class Scheduler(LoggedProcess):
    def __init__(self, db: str, folder: Path, log: Path) -> None:
        super().__init__(
            log, "scheduler", "--dags-folder", str(folder), "--db", db, "--workers", "2",
            "--grace", "1", "--rescan-interval", "3600",
        )  # fmt: skip


def takeover(tmp_path: Path, db: str) -> None:
    folder, markers = tmp_path / "dags", tmp_path / "markers"
    folder.mkdir()
    markers.mkdir()
    receiver = Receiver().start()
    (folder / "work.yaml").write_text(dag_text(markers, receiver.url))
    first = Scheduler(db, folder, tmp_path / "first.log")
    second: Scheduler | None = None
    store = open_store(db)
    try:
        poll_until(lambda: first.says("scheduler running"), timeout=60)
        second = Scheduler(db, folder, tmp_path / "second.log")
        standby = second
        poll_until(lambda: standby.says("standby:"), timeout=60)
        control = RemoteControl(store)
        runs = [control.trigger(TriggerRequest("work", run_id=f"r{i}")) for i in range(RUNS)]

        def running() -> bool:
            return any(
                ti.state.value == "running"
                for run in runs
                for ti in store.tasks.query_task_instances(_tis(run)).items
            )

        poll_until(running, timeout=60)
        first.kill()
        killed = time.monotonic()
        poll_until(lambda: standby.says("taking over"), timeout=30)
        assert time.monotonic() - killed < 5  # the standby asks twice a second

        def finished() -> bool:
            return all(
                store.runs.get_run("work", r.run_id).state in FINISHED_RUN_STATES for r in runs
            )

        poll_until(finished, timeout=120)
        assert {store.runs.get_run("work", r.run_id).state for r in runs} == {RunState.SUCCESS}
        done = {p.name: p.read_text().split() for p in markers.iterdir()}
        assert len(done) == RUNS * TASKS
        assert all(len(tries) == 1 for tries in done.values()), done  # nothing done twice
        events = store.events.read_events(EventQuery(types=("task.state_changed",), limit=100_000))
        assert any(e.payload.get("reason") == "orphaned" for e in events)  # the kill cut a try
        # Each ending notified once, across the takeover: the standby delivered what the
        # killed scheduler had not.
        # (A delivery the kill cut before it was recorded comes again, with the same id.)
        retried = sum(e.payload["new_state"] == "up_for_retry" for e in events)
        counts = store.notifications.notification_counts
        poll_until(lambda: counts()["delivered"] == retried + RUNS, timeout=60)
        unique = {r.delivery: r for r in receiver.wait_for(retried + RUNS)}
        kinds = Counter(r.json["event"] for r in unique.values())
        assert kinds == {"task_retrying": retried, "run_succeeded": RUNS}
        assert counts() == {"pending": 0, "delivered": retried + RUNS, "failed": 0}
    finally:
        first.stop()
        if second is not None:
            second.stop()
        store.close()
        receiver.stop()


def _tis(run):  # type: ignore[no-untyped-def]
    from pipeline_core.store.types import TaskInstanceQuery

    return TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id)


def test_a_standby_takes_over_on_sqlite(tmp_path):
    takeover(tmp_path, f"sqlite:///{tmp_path / 'failover.db'}")


def test_a_standby_takes_over_on_postgres(tmp_path, pg_url):
    takeover(tmp_path, pg_url)


def asset_takeover(tmp_path: Path, db: str) -> None:
    """Updates pour in while the active scheduler is killed; the standby takes over and
    every update makes exactly one run."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "each.yaml").write_text("dag_id: each\nmax_active_runs: 1000\n"
                                      "schedule: {assets: a}\ntasks: {t: {type: noop}}\n")  # fmt: skip
    first = Scheduler(db, folder, tmp_path / "first.log")
    second: Scheduler | None = None
    store = open_store(db)
    stop = threading.Event()

    def pour() -> None:
        while not stop.is_set():
            store.assets.post_update("a")

    sender = threading.Thread(target=pour)
    try:
        poll_until(lambda: first.says("scheduler running"), timeout=60)
        store.dags.set_paused("each", False)
        second = Scheduler(db, folder, tmp_path / "second.log")
        standby = second
        poll_until(lambda: standby.says("standby:"), timeout=60)
        sender.start()
        poll_until(lambda: store.runs.query_runs(RunQuery(dag_id="each", limit=0)).total > 200)
        first.kill()
        poll_until(lambda: standby.says("taking over"), timeout=30)
        poll_until(lambda: store.assets.list_updates("a", limit=1).total > 1500, timeout=60)
        stop.set()
        sender.join(10)
        recorded = store.assets.list_updates("a", limit=1).total

        def runs() -> int:
            return store.runs.query_runs(RunQuery(dag_id="each", limit=0)).total

        poll_until(lambda: runs() == recorded, timeout=120)
        made = store.runs.query_runs(RunQuery(dag_id="each", limit=100_000)).items
        consumed = [a["id"] for r in made for a in r.conf["triggering_assets"]]
        assert len(consumed) == len(set(consumed)) == recorded  # none lost, none twice
        assert store.assets.waiting("each") == []
    finally:
        stop.set()
        first.stop()
        if second is not None:
            second.stop()
        store.close()


def test_asset_updates_start_one_run_each_across_a_takeover_on_sqlite(tmp_path):
    asset_takeover(tmp_path, f"sqlite:///{tmp_path / 'assets.db'}")


def test_asset_updates_start_one_run_each_across_a_takeover_on_postgres(tmp_path, pg_url):
    asset_takeover(tmp_path, pg_url)
