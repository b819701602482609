"""``/assets``: the assets DAGs name and what updated them, and updates made from outside
(``POST /assets/events``) — each queued for every DAG scheduled on its asset, in the
transaction that records it, so it starts its runs exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, bad_request, envelope, listing
from pipeline_core.api.openapi.operation import PAGE, Answer, Operation, Param
from pipeline_core.api.openapi.parts import closed, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.api.routes.triggers import KEY
from pipeline_core.model import iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import AssetInfo, AssetUpdate

URI = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": r"^[^\s&|()]+$"}

LIST = Operation(
    "list_assets",
    "assets",
    "List assets",
    "Every asset a DAG names (scheduled on it, or produced by a task's outlets) or an update "
    "touched: how many updates, the last one, its producers and its consumers.",
    envelope_of(ref("Asset"), listing=True),
    (),
    read=True,
)
EVENTS = Operation(
    "list_asset_events",
    "assets",
    "List asset updates",
    "Updates of assets, newest first; of one asset with uri.",
    envelope_of(ref("AssetUpdate"), listing=True),
    (*PAGE, Param("uri", schema=URI)),
    read=True,
)
POST = Operation(
    "post_asset_event",
    "assets",
    "Record an update of an asset",
    "An update made outside (a table refreshed, a file landed): queued for every DAG "
    "scheduled on the asset, in the same transaction. With an Idempotency-Key header (or "
    "idempotency_key), a repeat answers the first update with 200.",
    envelope_of(ref("AssetUpdate")),
    (Param("Idempotency-Key", "header", KEY, "a repeat answers the first update"),),
    body=closed(
        ["uri"],
        uri=URI,
        extra={"type": ["object", "null"]},
        idempotency_key={**KEY, "type": ["string", "null"]},
    ),
    body_required=True,
    example={"uri": "db://warehouse/orders", "extra": {"rows": 1200}},
    created=True,
    answers=[
        Answer(
            "200",
            "the update an earlier request with this key recorded",
            envelope_of(ref("AssetUpdate")),
        )
    ],
)


def asset_dict(asset: AssetInfo) -> dict[str, Any]:
    return {"uri": asset.uri, "updates": asset.updates, "last_update": iso(asset.last_update),
            "producers": asset.producers, "consumers": asset.consumers}  # fmt: skip


def update_dict(update: AssetUpdate) -> dict[str, Any]:
    source = None
    if update.dag_id is not None:
        source = {"dag_id": update.dag_id, "run_id": update.run_id, "task_id": update.task_id,
                  "map_index": update.map_index}  # fmt: skip
    return {"id": update.id, "uri": update.uri, "extra": dict(update.extra),
            "source": source, "timestamp": iso(update.timestamp)}  # fmt: skip


def list_assets(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        found = store.assets.list_assets()
        return listing([asset_dict(a) for a in found], len(found), max(len(found), 1), 0)

    return handle


def list_events(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        found = store.assets.list_updates(request.args.get("uri"), limit=limit, offset=offset)
        return listing([update_dict(u) for u in found.items], found.total, limit, offset)

    return handle


def post_event(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        header, field = request.args.get("Idempotency-Key"), body.get("idempotency_key")
        if header is not None and field is not None and header != field:
            raise bad_request("the Idempotency-Key header and 'idempotency_key' in the body differ")
        key = header if header is not None else field
        update, replayed = store.assets.post_update(body["uri"], body.get("extra"), key=key)
        status = 200 if replayed else 201
        location = f"/api/v1/assets/events?uri={update.uri}"
        return envelope(update_dict(update), status=status, headers={"Location": location})

    return handle
