"""The ``pipeline-core`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any, TextIO

from pipeline_core._version import __version__
from pipeline_core.cli_engine import add_engine_options
from pipeline_core.cli_events import add_events_command
from pipeline_core.cli_run import dags_test, run_scheduler, tasks_logs
from pipeline_core.cli_serve import add_server_options, api, serve
from pipeline_core.dag.bag import DagBag, load_folder
from pipeline_core.dag.graph import Graph
from pipeline_core.dag.model import DAG

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DB = "sqlite:///.pipeline-core/pipeline.db"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    result: int = args.handler(args, sys.stdout)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-core", description="Workflow orchestrator.")
    parser.add_argument("--version", action="version", version=f"pipeline-core {__version__}")
    commands = parser.add_subparsers(title="commands")
    dags = commands.add_parser("dags", help="inspect DAG definitions").add_subparsers(title="dags")

    def dag_command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = dags.add_parser(name, help=help_text)
        _folder_option(sub)
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
    _db_option(test, default="memory://")
    add_engine_options(test)
    tasks = commands.add_parser("tasks", help="inspect task instances").add_subparsers(
        title="tasks"
    )
    logs = tasks.add_parser("logs", help="print a task's log")
    logs.add_argument("dag_id")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    logs.add_argument("--try", dest="try_number", type=int, help="which try (default: the latest)")
    _db_option(logs)
    logs.set_defaults(handler=tasks_logs)
    _add_long_running_commands(commands)
    add_events_command(commands)
    return parser


def _add_long_running_commands(commands: Any) -> None:
    """``scheduler``, ``serve`` and ``api``: the commands that run until stopped."""
    scheduler = commands.add_parser(
        "scheduler", help="run the scheduler and engine in the foreground"
    )
    _folder_option(scheduler)
    _db_option(scheduler)
    scheduler.add_argument(
        "--rescan-interval", type=float, default=30.0, help="seconds between folder scans"
    )
    scheduler.add_argument(
        "--grace", type=float, default=30.0, help="seconds to let tasks finish on stop"
    )
    scheduler.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    add_engine_options(scheduler)
    scheduler.set_defaults(handler=run_scheduler)
    serve_cmd = commands.add_parser("serve", help="engine, scheduler and REST API in one process")
    _folder_option(serve_cmd)
    _db_option(serve_cmd)
    add_server_options(serve_cmd)
    serve_cmd.add_argument(
        "--no-scheduler", action="store_true", help="run DAGs only when triggered"
    )
    serve_cmd.add_argument("--rescan-interval", type=float, default=30.0)
    serve_cmd.add_argument("--grace", type=float, default=30.0)
    serve_cmd.add_argument(
        "--event-streams",
        choices=("process", "thread"),
        default="process",
        help="write live event streams from a process of their own (default; keeps the "
        "fan-out off the engine) or from a thread of this one",
    )
    add_engine_options(serve_cmd)
    serve_cmd.set_defaults(handler=serve)
    api_cmd = commands.add_parser(
        "api", help="the REST API alone, beside 'pipeline-core scheduler'"
    )
    _db_option(api_cmd)
    add_server_options(api_cmd)
    api_cmd.set_defaults(handler=api)


def _folder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dags-folder",
        default=os.environ.get("PIPELINE_CORE_DAGS_FOLDER", "dags"),
        help="folder of DAG files (env PIPELINE_CORE_DAGS_FOLDER; default ./dags)",
    )


def _db_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("PIPELINE_CORE_DB", default or DEFAULT_DB),
        help=f"database URL (env PIPELINE_CORE_DB; default {default or DEFAULT_DB})",
    )


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
        _table(out, ["dag_id", "schedule", "tasks", "tags", "fileloc"], rows)
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
    table = [{**row, "depends_on": ", ".join(row["depends_on"]) or "-"} for row in rows]
    _table(out, ["task_id", "type", "depends_on", "trigger_rule", "retries", "pool"], table)
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


def _table(out: TextIO, columns: list[str], rows: list[dict[str, Any]]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)
