"""``pipeline-core dags test`` and ``pipeline-core tasks logs``: run and inspect from a shell."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, TextIO

from pipeline_core.cli_engine import start_engine
from pipeline_core.dag.bag import load_folder
from pipeline_core.errors import PipelineError
from pipeline_core.model import Event, TaskKey
from pipeline_core.state import FINISHED_RUN_STATES, FINISHED_TASK_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery

EXIT_OK, EXIT_FAILED = 0, 1


def dags_test(args: argparse.Namespace, out: TextIO) -> int:
    """Run one run of a DAG in this process, printing every state change as it happens."""
    conf = _conf(args.conf)
    if conf is None:
        return EXIT_FAILED
    bag = load_folder(args.dags_folder)
    dag = bag.dags.get(args.dag_id)
    if dag is None:
        sys.stderr.write(f"error: no DAG '{args.dag_id}' in {bag.folder}\n")
        return EXIT_FAILED
    store = open_store(args.db)
    done = threading.Event()
    total = len(dag.tasks)
    finished: set[str] = set()
    run_id: list[str] = []

    def show(events: list[Event]) -> None:
        for event in events:
            if run_id and event.run_id != run_id[0]:
                continue
            p = event.payload
            if event.type == "task.state_changed":
                out.write(
                    f"{p['timestamp']}  {p['task_id']:<24} {p['previous_state']} → {p['new_state']}"
                )
                out.write(
                    f"  (try {p['try_number']})"
                    + (f"  {p['error']}" if p.get("error") else "")
                    + "\n"
                )
                if p["new_state"] in {s.value for s in FINISHED_TASK_STATES}:
                    finished.add(p["task_id"])
                    out.write(f"progress: {len(finished)}/{total} tasks done\n")
            elif event.type == "run.state_changed":
                change = f"{p['previous_state']} → {p['new_state']}"
                out.write(f"{p['timestamp']}  run {p['run_id']}: {change}\n")
                if p["new_state"] in {s.value for s in FINISHED_RUN_STATES}:
                    done.set()
            out.flush()

    store.feed.subscribe(show, other_processes=False)
    engine = start_engine(store, args, {dag.dag_id: dag})
    if engine is None:
        store.close()
        return EXIT_FAILED
    try:
        run = engine.trigger(dag.dag_id, conf)
        run_id.append(run.run_id)
        if run.state is RunState.QUEUED:
            out.write("run is queued (the DAG is paused or at max_active_runs)\n")
        wait_until_set(done)
        final = store.get_run(dag.dag_id, run.run_id)
        _summary(store, final.dag_id, final.run_id, out)
        out.write(f"run {final.run_id}: {final.state.value} in {final.duration_ms} ms\n")
        return EXIT_OK if final.state is RunState.SUCCESS else EXIT_FAILED
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    finally:
        engine.stop(grace=5)
        store.close()


def _conf(text: str | None) -> dict[str, Any] | None:
    """``--conf`` as a JSON object; ``None`` (reason on stderr) when it is not one."""
    try:
        conf = json.loads(text) if text else {}
    except ValueError as exc:
        sys.stderr.write(f"error: --conf is not valid JSON: {exc}\n")
        return None
    if not isinstance(conf, dict):
        sys.stderr.write("error: --conf must be a JSON object\n")
        return None
    return conf


def _summary(store: Any, dag_id: str, run_id: str, out: TextIO) -> None:
    tis = store.query_task_instances(TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=100_000))
    rows = [
        (ti.task_id, ti.state.value, str(ti.try_number), _ms(ti.duration_ms)) for ti in tis.items
    ]
    headers = ("task", "state", "tries", "duration")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("\n" + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n")


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def tasks_logs(args: argparse.Namespace, out: TextIO) -> int:
    """Print one try's log (the latest try unless ``--try`` is given)."""
    store = open_store(args.db)
    try:
        key = TaskKey(args.dag_id, args.run_id, args.task_id)
        try_number = args.try_number or store.get_task_instance(key).try_number
        out.write(store.read_log(key, try_number).text)
        return EXIT_OK
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    finally:
        store.close()


def run_scheduler(args: argparse.Namespace, out: TextIO) -> int:
    """Scheduler + engine in the foreground until SIGINT or SIGTERM."""
    import logging
    import signal

    from pipeline_core.scheduler.scheduler import Scheduler, SchedulerSettings

    configure_logging(args.log_level)
    log = logging.getLogger("pipeline_core")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if not check_dags_folder(args.dags_folder):
        return EXIT_FAILED
    try:
        store = open_store(args.db)
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    engine = start_engine(store, args)
    if engine is None:
        store.close()
        return EXIT_FAILED
    settings = SchedulerSettings(rescan_interval=args.rescan_interval)
    scheduler = Scheduler(store, engine, args.dags_folder, settings=settings).start()
    log.info(
        "scheduler running: %d DAG(s) from %s, database %s",
        len(scheduler.dags),
        args.dags_folder,
        store.url,
    )
    wait_until_set(stop)
    log.info("stopping: waiting up to %ss for running tasks", args.grace)
    scheduler.stop()
    engine.stop(grace=args.grace)
    store.close()
    log.info("stopped")
    return EXIT_OK


def check_dags_folder(folder: str) -> bool:
    """A missing DAGs folder is an error (``False``, reason on stderr); an empty one works
    but is worth a warning, since nothing will run."""
    import logging
    from pathlib import Path

    path = Path(folder)
    if not path.is_dir():
        sys.stderr.write(
            f"error: the DAGs folder {str(path.resolve())!r} does not exist "
            "(set --dags-folder or PIPELINE_CORE_DAGS_FOLDER)\n"
        )
        return False
    if not any(p.suffix in (".py", ".yaml", ".yml") for p in path.rglob("*") if p.is_file()):
        logging.getLogger("pipeline_core").warning(
            "the DAGs folder %s has no DAG files (*.py, *.yaml): nothing will run", path.resolve()
        )
    return True


def wait_until_set(event: threading.Event) -> None:
    """Block the main thread until ``event`` is set. Waking now and then lets Python run a
    signal handler even when the signal was delivered to another thread, which a wait
    without a timeout would never notice."""
    while not event.wait(timeout=1.0):
        pass


def configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
