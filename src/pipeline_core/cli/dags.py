"""``pipeline-core dags``: list, validate and show the DAGs of a folder, print the YAML
format's schema, and test one run in this process."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from importlib import resources
from typing import Any, TextIO

from pipeline_core.cli import admin
from pipeline_core.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_engine_options,
    db_option,
    folder_option,
    start_engine,
    table,
    wait_until_set,
)
from pipeline_core.dag.bag import DagBag, load_folder
from pipeline_core.dag.graph import Graph
from pipeline_core.dag.model import DAG
from pipeline_core.errors import PipelineError
from pipeline_core.events import Event
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, FINISHED_TASK_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery


def add_commands(commands: Any) -> None:
    """``dags list | validate | show | schema | test``, and ``pause | unpause`` on a server."""
    dags = commands.add_parser("dags", help="inspect DAG definitions").add_subparsers(title="dags")

    def dag_command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = dags.add_parser(name, help=help_text)
        folder_option(sub)
        sub.set_defaults(handler=handler)
        return sub

    dag_command("list", _dags_list, "list the DAGs of the folder").add_argument(
        "--format", choices=("table", "json"), default="table"
    )
    dag_command("validate", _dags_validate, "check every DAG file; exit 1 listing all errors")
    show = dag_command("show", _dags_show, "show one DAG's tasks in dependency order")
    show.add_argument("dag_id")
    show.add_argument("--format", choices=("table", "json"), default="table")
    schema = dags.add_parser("schema", help="print the JSON Schema of the YAML format")
    schema.set_defaults(handler=_dags_schema)
    test = dag_command("test", dags_test, "run one run now, in this process, showing progress")
    test.add_argument("dag_id")
    test.add_argument("--conf", help="run configuration as a JSON object")
    db_option(test, default="memory://")
    add_engine_options(test)
    admin.add_dag_commands(dags)


def _dags_list(args: argparse.Namespace, out: TextIO) -> int:
    bag = load_folder(args.dags_folder)
    rows = [
        {
            "dag_id": dag.dag_id,
            "schedule": dag.schedule,
            "tasks": len(dag.tasks),
            "tags": list(dag.tags),
            "fileloc": dag.fileloc,
        }
        for dag in sorted(bag.dags.values(), key=lambda d: d.dag_id)
    ]
    if args.format == "json":
        out.write(json.dumps(rows, indent=2) + "\n")
    else:
        table(out, ["dag_id", "schedule", "tasks", "tags", "fileloc"], rows)
    _report_errors(bag, sys.stderr)
    return EXIT_FAILED if bag.errors else EXIT_OK


def _dags_validate(args: argparse.Namespace, out: TextIO) -> int:
    bag = load_folder(args.dags_folder)
    if bag.errors:
        _report_errors(bag, out)
        return EXIT_FAILED
    out.write(f"{len(bag.dags)} DAG(s) in {len(bag.files)} file(s): all valid\n")
    return EXIT_OK


def _dags_show(args: argparse.Namespace, out: TextIO) -> int:
    bag = load_folder(args.dags_folder)
    dag = bag.dags.get(args.dag_id)
    if dag is None:
        sys.stderr.write(f"error: no DAG '{args.dag_id}' in {bag.folder}\n")
        _report_errors(bag, sys.stderr)
        return EXIT_FAILED
    rows = describe_tasks(dag)
    if args.format == "json":
        out.write(
            json.dumps({"dag_id": dag.dag_id, "schedule": dag.schedule, "tasks": rows}, indent=2)
        )
        out.write("\n")
        return EXIT_OK
    out.write(f"{dag.dag_id}  schedule={dag.schedule}  tasks={len(dag.tasks)}\n")
    shown = [{**row, "depends_on": ", ".join(row["depends_on"]) or "-"} for row in rows]
    table(out, ["task_id", "type", "depends_on", "trigger_rule", "retries", "pool"], shown)
    return EXIT_OK


def describe_tasks(dag: DAG) -> list[dict[str, Any]]:
    """Tasks in topological order with their main fields (for display)."""
    tasks = dag.task_dict
    return [
        {
            "task_id": task_id,
            "type": tasks[task_id].type,
            "depends_on": list(tasks[task_id].depends_on),
            "trigger_rule": tasks[task_id].trigger_rule.value,
            "retries": tasks[task_id].retries,
            "pool": tasks[task_id].pool,
        }
        for task_id in Graph.of(dag).topological_order()
    ]


def _dags_schema(args: argparse.Namespace, out: TextIO) -> int:
    out.write(resources.files("pipeline_core.dag").joinpath("dag.schema.json").read_text("utf-8"))
    return EXIT_OK


def _report_errors(bag: DagBag, out: TextIO) -> None:
    for issues in bag.errors.values():
        for issue in issues:
            out.write(f"error: {issue}\n")


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
        run = engine.trigger(TriggerRequest(dag.dag_id, conf))
        run_id.append(run.run_id)
        if run.state is RunState.QUEUED:
            out.write("run is queued (the DAG is paused or at max_active_runs)\n")
        wait_until_set(done)
        final = store.runs.get_run(dag.dag_id, run.run_id)
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
    tis = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=100_000)
    )
    mapped = store.tasks.mapped_counts(dag_id, run_id)
    rows = [
        (ti.task_id, _mapped(ti.state.value, mapped.get(ti.task_id)), str(ti.try_number),
         _ms(ti.duration_ms))
        for ti in tis.items
    ]  # fmt: skip
    headers = ("task", "state", "tries", "duration")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("\n" + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n")


def _mapped(state: str, counts: dict[str, int] | None) -> str:
    """A mapped task's state with its instances': ``success (12 mapped: 12 success)``."""
    if counts is None:
        return state
    each = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{state} ({sum(counts.values())} mapped: {each})"


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"
