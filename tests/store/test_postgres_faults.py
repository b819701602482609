"""PostgreSQL going away under a running engine: every connection dropped by the server (what
a restart does to its clients), and the run goes on once it answers again."""

from __future__ import annotations

import psycopg

from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery
from tests import fixtures
from tests.conftest import PG_DSN, poll_until

DAG = "dag_id: t\ntasks:\n" + "".join(
    f'  t{i}: {{type: python, callable: "tests.fixtures:track", kwargs: {{name: t{i}, seconds: 0.2}}'
    + (f", depends_on: [t{i - 1}]" if i else "")
    + "}\n"
    for i in range(6)
)


#: The store's connections name themselves, so that the server drops theirs and not those
#: of tests running beside this one on the same database.
APPLICATION = "pipeline-core-dropped"


def drop_every_connection() -> int:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (APPLICATION,),
        ).fetchall()
    return len(rows)


def test_a_run_goes_on_after_the_server_drops_every_connection(pg_url):
    fixtures.reset()
    store = open_store(f"{pg_url}&application_name={APPLICATION}")
    engine = Engine(
        store, {"t": load_dag_text(DAG)}, settings=EngineSettings(default_executor="thread")
    ).start()
    try:
        run = engine.trigger(TriggerRequest("t"))

        def done(task_id: str) -> bool:
            query = TaskInstanceQuery(dag_id="t", run_id=run.run_id, task_id=task_id)
            return store.tasks.query_task_instances(query).items[0].state.value == "success"

        poll_until(lambda: done("t1"), timeout=30)
        assert drop_every_connection() >= 1
        poll_until(
            lambda: store.runs.get_run("t", run.run_id).state in FINISHED_RUN_STATES, timeout=60
        )
        assert store.runs.get_run("t", run.run_id).state is RunState.SUCCESS
        assert fixtures.order == [f"t{i}" for i in range(6)]  # each task ran once
        assert drop_every_connection() >= 0 and store.pools.list_pools()  # the pool reconnects
    finally:
        engine.stop(grace=5)
        store.close()
