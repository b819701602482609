"""``/pools``: list, create, update and delete pools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import PAGE, Operation, Param
from pipeline_core.api.openapi.parts import ID, closed, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.api.serialize import pool_dict
from pipeline_core.errors import Conflict
from pipeline_core.state import TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import Pool

#: More slots than any machine runs tasks; bounded so that the store's integers hold it.
SLOTS = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
DESCRIPTION = {"type": "string", "maxLength": 1000}
#: ``N/s``, ``N/m`` or ``N/h`` (also second, minute, hour); ``null`` or ``""`` takes it off.
RATE = {"type": ["string", "null"], "maxLength": 40}
BURST = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
NAME = (Param("name", "path", ID),)

LIST = Operation(
    "list_pools",
    "pools",
    "List pools",
    "Every pool with its slots, running and queued tries.",
    envelope_of(ref("Pool"), listing=True),
    PAGE,
    read=True,
    scope="none",
)
CREATE = Operation(
    "create_pool",
    "pools",
    "Create a pool",
    "Create a pool with a number of slots and, optionally, a rate limit: at most `rate` "
    "tries of the pool start per second, minute or hour (`100/m`), `burst` at once.",
    envelope_of(ref("Pool")),
    body=closed(
        ["name", "slots"], name=ID, slots=SLOTS, description=DESCRIPTION, rate=RATE, burst=BURST
    ),
    body_required=True,
    example={
        "name": "warehouse",
        "slots": 4,
        "description": "connections to the warehouse",
        "rate": "100/m",
        "burst": 10,
    },
    created=True,
    role="admin",
    scope="none",
)
PATCH = Operation(
    "patch_pool",
    "pools",
    "Resize or describe a pool",
    "Change a pool's slots, description or rate limit (`rate: null` takes it off).",
    envelope_of(ref("Pool")),
    NAME,
    body={
        **closed(slots=SLOTS, description=DESCRIPTION, rate=RATE, burst=BURST),
        "minProperties": 1,
    },
    body_required=True,
    example={"slots": 8},
    role="admin",
    scope="none",
)
DELETE = Operation(
    "delete_pool",
    "pools",
    "Delete a pool",
    "Delete a pool that no running try uses (409 otherwise).",
    envelope_of(ref("PoolDeleted")),
    NAME,
    role="admin",
    scope="none",
)


def _describe(store: Store, pool: Pool) -> dict[str, Any]:
    usage = store.pools.pool_usage().get(pool.name, {})
    return pool_dict(pool, usage.get(TaskState.RUNNING, 0), usage.get(TaskState.QUEUED, 0))


def list_pools(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        usage = store.pools.pool_usage()
        pools = store.pools.list_pools()
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


def create_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        rate, burst = body.get("rate") or None, int(body.get("burst", 1))
        pool = store.pools.create_pool(
            Pool(body["name"], int(body["slots"]), body.get("description"), rate, burst)
        )
        return envelope(
            _describe(store, pool), status=201, headers={"Location": f"/api/v1/pools/{pool.name}"}
        )

    return handle


def patch_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        slots = int(body["slots"]) if "slots" in body else None
        rate = body["rate"] or "" if "rate" in body else None  # "": taken off
        burst = int(body["burst"]) if "burst" in body else None
        pool = store.pools.update_pool(
            request.params["name"],
            slots=slots,
            description=body.get("description"),
            rate=rate,
            burst=burst,
        )
        return envelope(_describe(store, pool))

    return handle


def delete_pool(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        name = request.params["name"]
        pool = store.pools.get_pool(name)
        running = store.pools.pool_usage().get(name, {}).get(TaskState.RUNNING, 0)
        if running:
            raise Conflict(f"pool '{name}' has {running} running task(s)")
        store.pools.delete_pool(pool.name)
        return envelope({"name": name, "deleted": True})

    return handle
