"""Assets in SQL: their updates, which DAGs consume and produce which assets, and the
updates waiting for each consumer.

An update is an ``asset.updated`` event; its id is the event's ``seq``. It is queued for
every DAG scheduled on its asset in the transaction that records it, and a run consumes the
queued updates that satisfied its DAG's condition in the transaction that creates the run
(``CreateRun.consumes``): an update is never lost between the two, nor used twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline_core.dag.assets import ConditionError, parse_condition, uris
from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.model import TaskKey, UpdateAssets, iso
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import AssetInfo, AssetUpdate, Page

UPDATE_COLUMNS = "id, uri, extra, dag_id, run_id, task_id, map_index, timestamp"
#: The mark of a DAG's own reference (its schedule) among its tasks' (their outlets).
CONSUMER = ""


class AssetsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def post_update(
        self, uri: str, extra: Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> tuple[AssetUpdate, bool]:
        """Record an update made outside (``POST /assets/events``); with ``key``, a repeat
        answers the first update (``True``: it is that replay)."""
        text = to_json(dict(extra or {}), "extra")

        def work(tx: Tx, pending: Pending) -> tuple[AssetUpdate, bool]:
            if key is not None:
                row = tx.one(
                    f"SELECT {UPDATE_COLUMNS} FROM asset_events WHERE idempotency_key = ?", (key,)
                )
                if row is not None:
                    return update_from_row(row), True
            return record(self.sql, tx, pending, uri, text, None, key, self.sql.clock()), False

        result: tuple[AssetUpdate, bool] = self.sql.write(work)
        return result

    def waiting(self, dag_id: str) -> list[AssetUpdate]:
        """The updates queued for ``dag_id``, oldest first."""
        rows = self.sql.read(
            lambda tx: tx.rows(
                f"SELECT {_columns('e')} FROM asset_queue q JOIN asset_events e "
                "ON e.id = q.event_id WHERE q.dag_id = ? ORDER BY e.id",
                (dag_id,),
            )
        )
        return [update_from_row(r) for r in rows]

    def consumers_waiting(self) -> list[str]:
        """The DAGs with queued updates."""
        rows = self.sql.read(lambda tx: tx.rows("SELECT DISTINCT dag_id FROM asset_queue"))
        return sorted(r[0] for r in rows)

    def list_updates(
        self, uri: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> Page[AssetUpdate]:
        """Updates, newest first; of one asset with ``uri``."""
        where, args = ("WHERE uri = ?", (uri,)) if uri is not None else ("", ())

        def read(tx: Tx) -> Page[AssetUpdate]:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM asset_events {where}", args))
            rows = tx.rows(
                f"SELECT {UPDATE_COLUMNS} FROM asset_events {where} ORDER BY id DESC "
                "LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return Page([update_from_row(r) for r in rows], total, limit, offset)

        page: Page[AssetUpdate] = self.sql.read(read)
        return page

    def list_assets(self) -> list[AssetInfo]:
        """Every asset a DAG names or an update touched: its last update, how many there
        were, the tasks that produce it (``dag.task``) and the DAGs scheduled on it."""

        def read(tx: Tx) -> list[AssetInfo]:
            found: dict[str, dict[str, Any]] = {}
            for uri, count, last in tx.rows(
                "SELECT uri, COUNT(*), MAX(timestamp) FROM asset_events GROUP BY uri"
            ):
                found[uri] = {"updates": int(count), "last": parse_ts(last)}
            for dag_id, uri, task_id in tx.rows("SELECT dag_id, uri, task_id FROM asset_refs"):
                info = found.setdefault(uri, {"updates": 0, "last": None})
                role = "consumers" if task_id == CONSUMER else "producers"
                info.setdefault(role, []).append(
                    dag_id if task_id == CONSUMER else f"{dag_id}.{task_id}"
                )
            return [
                AssetInfo(uri, i["updates"], i["last"], sorted(i.get("producers", [])),
                          sorted(i.get("consumers", [])))
                for uri, i in sorted(found.items())
            ]  # fmt: skip

        assets: list[AssetInfo] = self.sql.read(read)
        return assets


def set_references(tx: Tx, dag_id: str, definition: Mapping[str, Any] | None) -> None:
    """What a DAG's definition names: the assets it is scheduled on, and the outlets of its
    tasks that are known before a run (those without templates)."""
    tx.run("DELETE FROM asset_refs WHERE dag_id = ?", (dag_id,))
    if not definition:
        return
    rows: list[tuple[str, str, str]] = []
    condition = (definition.get("assets") or {}).get("assets")
    if condition:
        with contextlib.suppress(ConditionError):  # a definition is validated before it is stored
            named = uris(parse_condition(condition))
            rows += [(dag_id, uri, CONSUMER) for uri in sorted(named)]
    for task in definition.get("tasks", ()):
        rows += [
            (dag_id, uri, task["task_id"]) for uri in task.get("outlets", ()) if "{{" not in uri
        ]
    tx.many("INSERT INTO asset_refs (dag_id, uri, task_id) VALUES (?, ?, ?)", sorted(set(rows)))


def record_task_updates(
    sql: Sql, tx: Tx, pending: Pending, write: UpdateAssets, now: datetime
) -> None:
    """A task's success updated its outlets, with the ``asset_extra`` XCom it pushed."""
    key = write.key
    row = tx.one(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
        "AND map_index = ? AND key = 'asset_extra'",
        (key.dag_id, key.run_id, key.task_id, key.map_index),
    )
    extra = row[0] if row is not None and row[0].startswith("{") else "{}"
    for uri in dict.fromkeys(write.uris):
        record(sql, tx, pending, uri, extra, key, None, now)


def record(
    sql: Sql, tx: Tx, pending: Pending, uri: str, extra: str, source: TaskKey | None,
    key: str | None, now: datetime,
) -> AssetUpdate:  # fmt: skip
    """One update: its event, its row, and a place in the queue of every consumer."""
    if not uri or len(uri) > 1000 or any(c.isspace() or c in "&|()" for c in uri):
        raise InvalidRequest(f"asset URI {uri!r:.80} is empty, too long or has a blank or &|()")
    dag_id, run_id, task_id = (
        (source.dag_id, source.run_id, source.task_id) if source else (None,) * 3
    )
    payload = {"uri": uri, "extra": json.loads(extra), "timestamp": iso(now),
               **({"source": {"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                              "map_index": source.map_index}} if source else {})}  # fmt: skip
    (event,) = sql.append(tx, pending, [("asset.updated", payload, dag_id, run_id, task_id)], now)
    map_index = source.map_index if source else None
    recorded = tx.run(
        f"INSERT INTO asset_events ({UPDATE_COLUMNS}, idempotency_key, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        (event.seq, uri, extra, dag_id, run_id, task_id, map_index, iso(now), key, event.seq),
    )
    if not recorded:  # a concurrent repeat of the key came first: this one writes nothing
        raise Conflict(f"asset update with idempotency key {key!r:.80} is being recorded")
    tx.run(
        "INSERT INTO asset_queue (dag_id, event_id, uri) "
        "SELECT dag_id, ?, uri FROM asset_refs WHERE uri = ? AND task_id = ?",
        (event.seq, uri, CONSUMER),
    )
    return AssetUpdate(event.seq, uri, json.loads(extra), dag_id, run_id, task_id, map_index, now)


def consume(tx: Tx, dag_id: str, ids: Sequence[int]) -> None:
    """Take ``ids`` out of ``dag_id``'s queue; ``Conflict`` (undoing the run's creation) if
    one of them is not there any more."""
    if not ids:
        return
    marks = ", ".join("?" for _ in ids)
    taken = tx.run(
        f"DELETE FROM asset_queue WHERE dag_id = ? AND event_id IN ({marks})", (dag_id, *ids)
    )
    if taken != len(set(ids)):
        raise Conflict(f"the asset updates of DAG '{dag_id}' were consumed by another run")


def update_from_row(row: Sequence[Any]) -> AssetUpdate:
    extra = json.loads(row[2]) if row[2] else {}
    index = None if row[6] is None else int(row[6])
    return AssetUpdate(int(row[0]), row[1], extra, row[3], row[4], row[5], index, parse_ts(row[7]))


def _columns(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in UPDATE_COLUMNS.split(","))
