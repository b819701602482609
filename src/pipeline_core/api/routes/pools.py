"""``/pools``: list, create, update and delete pools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, bad_request, envelope, listing
from pipeline_core.api.params import body_integer, page
from pipeline_core.api.serialize import pool_dict
from pipeline_core.dag.model import invalid_id_reason
from pipeline_core.errors import Conflict
from pipeline_core.state import TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import Pool

MAX_DESCRIPTION = 1000
#: More slots than any machine runs tasks; bounded so that the store's integers hold it.
MAX_SLOTS = 1_000_000


def _describe(store: Store, pool: Pool) -> dict[str, Any]:
    usage = store.pool_usage().get(pool.name, {})
    return pool_dict(pool, usage.get(TaskState.RUNNING, 0), usage.get(TaskState.QUEUED, 0))


def list_pools(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request, set())
        usage = store.pool_usage()
        pools = store.list_pools()
        data = [
            pool_dict(
                p,
                usage.get(p.name, {}).get(TaskState.RUNNING, 0),
                usage.get(p.name, {}).get(TaskState.QUEUED, 0),
            )
            for p in pools[offset : offset + limit]
        ]
        return listing(data, len(pools), limit, offset)

    return handle


def _slots(value: Any) -> int:
    return body_integer(value, "slots", 0, MAX_SLOTS)


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise bad_request(f"'description' must be a string of at most {MAX_DESCRIPTION} characters")
    return value


def create_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"name", "slots", "description"})
        if "name" not in body or "slots" not in body:
            raise bad_request("the body needs 'name' and 'slots'")
        reason = invalid_id_reason(body["name"])
        if reason:
            raise bad_request(f"name: {reason}")
        pool = store.create_pool(
            Pool(
                body["name"],
                _slots(body["slots"]),
                _description(body["description"]) if "description" in body else None,
            )
        )
        return envelope(
            _describe(store, pool), status=201, headers={"Location": f"/api/v1/pools/{pool.name}"}
        )

    return handle


def patch_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"slots", "description"})
        if not body:
            raise bad_request("the body needs 'slots' and/or 'description'")
        slots = _slots(body["slots"]) if "slots" in body else None
        description = _description(body["description"]) if "description" in body else None
        pool = store.update_pool(request.params["name"], slots=slots, description=description)
        return envelope(_describe(store, pool))

    return handle


def delete_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        name = request.params["name"]
        pool = store.get_pool(name)
        running = store.pool_usage().get(name, {}).get(TaskState.RUNNING, 0)
        if running:
            raise Conflict(f"pool '{name}' has {running} running task(s)")
        store.delete_pool(pool.name)
        return envelope({"name": name, "deleted": True})

    return handle
