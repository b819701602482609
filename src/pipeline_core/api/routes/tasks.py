"""``.../runs/:run_id/tasks``: task instances, their tries, XCom and logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.log_follow import FollowedLog, LogFollowers
from pipeline_core.api.openapi.operation import PAGE, RUN, TASK, Operation, Param, page
from pipeline_core.api.openapi.parts import MAX_INTEGER, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page as read_page
from pipeline_core.api.serialize import with_mapped
from pipeline_core.errors import NotFound
from pipeline_core.model import TaskKey, iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import EventQuery, TaskInstanceQuery

#: The most of a log one answer carries: a try's whole log (logs are capped at 4 MiB).
MAX_LOG_BYTES = 4 * 1024 * 1024

FINISHED = {"success", "failed", "up_for_retry", "cancelled", "upstream_failed", "skipped"}

LIST = Operation(
    "list_task_instances",
    "tasks",
    "Task instances of a run",
    "The task instances of one run, a page at a time.",
    envelope_of(ref("TaskInstance"), listing=True),
    (*RUN, *PAGE),
    read=True,
)
GET = Operation(
    "get_task_instance",
    "tasks",
    "A task instance with every try",
    "One task instance with every try: start, end, state and error.",
    envelope_of(ref("TaskDetail")),
    TASK,
    read=True,
)
XCOM = Operation(
    "get_xcom",
    "tasks",
    "XCom entries of a task",
    "The XCom values a task pushed, optionally only the given keys, a page at a time.",
    envelope_of(ref("XCom"), listing=True),
    (*TASK, Param("key", schema={"type": "array", "items": {"type": "string"}}), *PAGE),
    read=True,
)
LOG = Operation(
    "get_log",
    "tasks",
    "A task's log (a byte range of one try)",
    "A byte range of one try's log (default: the latest try, from the start); with "
    "follow=true, the log from offset on as text/plain, streamed as it is written, ending "
    "when the try ends (or after limit bytes).",
    envelope_of(ref("Log")),
    (
        *TASK,
        Param("try_number", schema={"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}),
        Param(
            "follow",
            schema={"type": "boolean"},
            description="stream the try's log as text/plain while it is written; ends when "
            "the try ends",
        ),
        *page(MAX_LOG_BYTES),
    ),
    read=True,
    media={"text/plain": {"schema": {"type": "string"}}},
)


def task_key(request: Request) -> TaskKey:
    """The task instance a path names: a task's own, or an instance of a mapped task."""
    p = request.params
    return TaskKey(p["dag_id"], p["run_id"], p["task_id"], int(p.get("map_index", -1)))


def list_tasks(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = read_page(request)
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        found = store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id, limit=limit, offset=offset)
        )
        mapped = store.tasks.mapped_counts(run.dag_id, run.run_id) if found.items else {}
        return listing(with_mapped(found.items, mapped), found.total, limit, offset)

    return handle


def get_task(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        key = task_key(request)
        ti = store.tasks.get_task_instance(key)
        events = store.events.read_events(
            EventQuery(
                dag_id=key.dag_id,
                run_id=key.run_id,
                task_id=key.task_id,
                types=("task.state_changed",),
                limit=100_000,
            )
        )
        mine = [e for e in events if e.payload.get("map_index", -1) == key.map_index]
        mapped = store.tasks.mapped_counts(key.dag_id, key.run_id) if key.map_index < 0 else {}
        (answer,) = with_mapped([ti], mapped)
        return envelope({**answer, "tries": _tries(mine)})

    return handle


def _tries(events: list[Any]) -> list[dict[str, Any]]:
    tries: dict[int, dict[str, Any]] = {}
    for event in events:
        p = event.payload
        if p["new_state"] == "running":
            tries[p["try_number"]] = {
                "try_number": p["try_number"],
                "start_date": iso(event.timestamp),
                "end_date": None,
                "state": "running",
                "error": None,
            }
        elif (
            p["new_state"] in FINISHED
            and p["try_number"] in tries
            and p["previous_state"] == "running"
        ):
            tries[p["try_number"]].update(
                end_date=iso(event.timestamp), state=p["new_state"], error=p.get("error")
            )
    return [tries[n] for n in sorted(tries)]


def get_xcom(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = read_page(request)
        key = task_key(request)
        store.tasks.get_task_instance(key)
        wanted = request.args.get("key")
        entries = [e for e in store.task_data.list_xcom(key) if not wanted or e.key in wanted]
        data = [
            {
                "key": e.key,
                "value": e.value,
                "timestamp": iso(e.timestamp),
                "size_bytes": e.size_bytes,
            }
            for e in entries[offset : offset + limit]
        ]
        return listing(data, len(entries), limit, offset)

    return handle


def get_logs(store: Store, followers: LogFollowers) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = read_page(request, default=1024 * 1024)
        key = task_key(request)
        ti = store.tasks.get_task_instance(key)
        try_number = request.args.get("try_number", max(1, ti.try_number))
        if try_number > max(1, ti.try_number):
            raise NotFound(f"task '{key.task_id}' has no try {try_number} (it has {ti.try_number})")
        if request.args.get("follow"):
            wanted = FollowedLog(key, try_number, offset, request.args.get("limit"))
            followers.check()
            response = Response(200, b"", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            response.content_type = "text/plain; charset=utf-8"
            response.handover = lambda sock, chunked: followers.start(sock, chunked, wanted)
            return response
        chunk = store.task_data.read_log(key, try_number, offset=offset, limit=limit)
        return envelope(
            {
                "try_number": try_number,
                "text": chunk.text,
                "offset": chunk.offset,
                "next_offset": chunk.next_offset,
                "size": chunk.size,
                "truncated": chunk.truncated,
            }
        )

    return handle
