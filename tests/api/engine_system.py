"""The API over a real engine, in the two deployments every route is tested in (the
``system`` fixture of tests/api/conftest.py)."""

from __future__ import annotations

import subprocess
import textwrap
import threading

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.engine import Engine
from pipeline_core.engine.control import Control
from pipeline_core.engine.remote import RemoteControl
from pipeline_core.engine.telemetry import RunMetrics
from pipeline_core.metrics import MetricsCollector
from pipeline_core.model import TaskKey
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store
from tests.api.conftest import Client
from tests.api.inprocess import AppClient
from tests.conftest import pipeline_core_process, poll_until

DAGS = {
    "etl.yaml": """
        schedule: "0 6 * * *"
        start_date: 2026-01-01
        tasks:
          extract: {type: shell, command: "echo '{\\"rows\\": 3}'"}
          load: {type: python, callable: "tests.fixtures:add", kwargs: {a: "{{ xcom.extract.return_value.rows }}", b: 1}, depends_on: [extract]}
        """,
    "flaky.yaml": """
        tasks:
          first: {type: noop}
          flaky: {type: python, callable: "tests.fixtures:fail_times", kwargs: {name: api, times: 1}, depends_on: [first]}
          after: {depends_on: [flaky]}
        """,
    "slow.yaml": """
        tasks:
          sleepy: {type: shell, command: "sleep 30"}
          later: {depends_on: [sleepy]}
        """,
    "ticker.yaml": """
        tasks:
          tick: {type: shell, command: "for i in 1 2 3 4 5; do echo tick $i; sleep 0.5; done"}
        """,
    "broken.yaml": "tasks: {a: {depends_on: [ghost]}}\n",
}


class System:
    """The API over a real engine: in one process on SQLite (``split`` false), or — as a
    deployment runs it — an API-only server on PostgreSQL whose commands reach a
    ``pipeline-core scheduler`` process through the store (``split``)."""

    def __init__(self, tmp_path, db: str | None = None) -> None:  # type: ignore[no-untyped-def]
        folder = tmp_path / "dags"
        folder.mkdir()
        for name, text in DAGS.items():
            (folder / name).write_text(textwrap.dedent(text))
        self.split = db is not None
        self.folder = folder
        self.store = open_store(db or f"sqlite:///{tmp_path / 'api.db'}")
        self.metrics = MetricsCollector()
        self.engine: Engine | None = None
        self.scheduler: subprocess.Popen[str] | None = None
        if db is None:
            self.engine = Engine(self.store, metrics=self.metrics).start()
            self.engine.set_dags(DagSync(self.store, folder).refresh())
            control: Control = self.engine
        else:
            # An engine with nothing scheduled, as the one-process engine here has none.
            log = tmp_path / "engine.log"
            with log.open("w") as output:
                self.scheduler = pipeline_core_process(
                    "serve", "--no-scheduler", "--port", "0", "--dags-folder", str(folder),
                    "--db", db, "--workers", "2", "--grace", "0", "--event-streams", "thread",
                    stdout=output, stderr=subprocess.STDOUT,
                )  # fmt: skip
            poll_until(lambda: "API on" in log.read_text(), timeout=60)
            control = RemoteControl(self.store)
            # As `pipeline-core api` does: run and task counters from the event log.
            self.store.feed.subscribe(RunMetrics(self.metrics), other_processes=True)
        self.server = APIServer(
            APIServerOptions(store=self.store, port=0, control=control, metrics=self.metrics)
        ).start()
        #: Routes are called in process; ``wire`` is a real connection, for what needs one.
        self.client = AppClient(self.server)
        self.wire = Client(self.server.port)
        self._changed = threading.Condition()
        self.store.feed.subscribe(self._notify, other_processes=self.split)

    def _notify(self, events) -> None:  # type: ignore[no-untyped-def]
        with self._changed:
            self._changed.notify_all()

    def wait_state(self, dag_id: str, run_id: str, states: set[str], timeout: float = 15) -> dict:  # type: ignore[type-arg]
        def current() -> str:
            return self.store.runs.get_run(dag_id, run_id).state.value

        with self._changed:
            assert self._changed.wait_for(lambda: current() in states, timeout), current()
        return self.client.request("GET", f"/api/v1/dags/{dag_id}/runs/{run_id}")[2]["data"]

    def wait_task_running(
        self, dag_id: str, run_id: str, task_id: str, timeout: float = 15
    ) -> None:
        def running() -> bool:
            key = TaskKey(dag_id, run_id, task_id)
            return self.store.tasks.get_task_instance(key).state.value == "running"

        with self._changed:
            assert self._changed.wait_for(running, timeout)

    def close(self) -> None:
        self.wire.connection.close()
        self.server.stop()
        if self.engine is not None:
            self.engine.stop(grace=0)
        if self.scheduler is not None:
            self.scheduler.terminate()
            self.scheduler.wait(30)
        self.store.close()


def trigger(system: System, dag_id: str, body: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    return system.client.request(
        "POST", f"/api/v1/dags/{dag_id}/runs", body if body is not None else {}
    )
