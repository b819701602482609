"""What tries leave behind, in SQL: XCom values and task logs."""

from __future__ import annotations

import json
from typing import Any

from pipeline_core.model import TaskKey, iso
from pipeline_core.store.sql.common import clip_log, task_not_found, to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.rows import KEY_WHERE, XCOM_COLUMNS, key_params, xcom_from_row
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import LogChunk, XComEntry


class TaskDataSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> XComEntry:
        text = to_json(value, f"XCom value '{xcom_key}'")
        entry = XComEntry(
            key.dag_id, key.run_id, key.task_id, xcom_key, value, len(text.encode("utf-8")),
            self.sql.clock(), key.map_index,
        )  # fmt: skip

        def work(tx: Tx, pending: Pending) -> XComEntry:
            if tx.one(f"SELECT 1 FROM task_instances WHERE {KEY_WHERE}", key_params(key)) is None:
                raise task_not_found(key)
            tx.run(
                f"INSERT INTO xcom ({XCOM_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dag_id, run_id, task_id, map_index, key) DO UPDATE "
                "SET value = excluded.value, size_bytes = excluded.size_bytes, "
                "timestamp = excluded.timestamp",
                (
                    *key_params(key)[:3],
                    xcom_key,
                    text,
                    entry.size_bytes,
                    iso(entry.timestamp),
                    key.map_index,
                ),
            )
            return entry

        result: XComEntry = self.sql.write(work)
        return result

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None:
        row = self.sql.read(
            lambda tx: tx.one(
                f"SELECT {XCOM_COLUMNS} FROM xcom WHERE {KEY_WHERE} AND key = ?",
                (*key_params(key), xcom_key),
            )
        )
        return xcom_from_row(row) if row else None

    def get_mapped_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry:
        """What the instances of a mapped task pushed under ``xcom_key``, as one entry whose
        value lists them in map-index order (empty when none did)."""
        rows = self.sql.read(
            lambda tx: tx.rows(
                "SELECT value, size_bytes, timestamp FROM xcom WHERE dag_id = ? AND run_id = ? "
                "AND task_id = ? AND map_index >= 0 AND key = ? ORDER BY map_index",
                (*key_params(key)[:3], xcom_key),
            )
        )
        values = [json.loads(row[0]) for row in rows]
        latest = max((parse_ts(row[2]) for row in rows), default=self.sql.clock())
        size = sum(int(row[1]) for row in rows) + len(rows) + 1  # the list's own punctuation
        return XComEntry(key.dag_id, key.run_id, key.task_id, xcom_key, values, size, latest)

    def list_xcom(self, key: TaskKey) -> list[XComEntry]:
        rows = self.sql.read(
            lambda tx: tx.rows(
                f"SELECT {XCOM_COLUMNS} FROM xcom WHERE {KEY_WHERE} ORDER BY key",
                key_params(key),
            )
        )
        return [xcom_from_row(r) for r in rows]

    def list_run_xcom(self, dag_id: str, run_id: str) -> list[XComEntry]:
        sql = (
            f"SELECT {XCOM_COLUMNS} FROM xcom WHERE dag_id = ? AND run_id = ? "
            "ORDER BY timestamp, task_id, map_index, key"
        )
        return [xcom_from_row(r) for r in self.sql.read(lambda tx: tx.rows(sql, (dag_id, run_id)))]

    def delete_xcom(self, key: TaskKey, xcom_key: str | None = None) -> int:
        if xcom_key is None:
            count: int = self.sql.write(
                lambda tx, _: tx.run(f"DELETE FROM xcom WHERE {KEY_WHERE}", key_params(key))
            )
        else:
            count = self.sql.write(
                lambda tx, _: tx.run(
                    f"DELETE FROM xcom WHERE {KEY_WHERE} AND key = ?", (*key_params(key), xcom_key)
                )
            )
        return count

    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        if not text:
            return

        def work(tx: Tx, pending: Pending) -> None:
            row = tx.one(
                f"SELECT size, truncated FROM log_sizes WHERE {KEY_WHERE} AND try_number = ?",
                (*key_params(key), try_number),
            )
            size, truncated = (int(row[0]), bool(row[1])) if row else (0, False)
            if truncated:
                return
            kept, cut = clip_log(text, size, self.sql.log_cap_bytes)
            data = kept.encode("utf-8")
            tx.run(
                "INSERT INTO task_logs (dag_id, run_id, task_id, map_index, try_number, "
                "byte_offset, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key_params(key), try_number, size, kept),
            )
            tx.run(
                "INSERT INTO log_sizes (dag_id, run_id, task_id, map_index, try_number, size, "
                "truncated) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dag_id, run_id, task_id, map_index, try_number) DO UPDATE SET "
                "size = excluded.size, truncated = excluded.truncated",
                (*key_params(key), try_number, size + len(data), cut),
            )

        self.sql.write(work)

    def read_log(
        self, key: TaskKey, try_number: int, *, offset: int = 0, limit: int | None = None
    ) -> LogChunk:
        def work(tx: Tx) -> LogChunk:
            meta = tx.one(
                f"SELECT size, truncated FROM log_sizes WHERE {KEY_WHERE} AND try_number = ?",
                (*key_params(key), try_number),
            )
            if meta is None:
                if (
                    tx.one(f"SELECT 1 FROM task_instances WHERE {KEY_WHERE}", key_params(key))
                    is None
                ):
                    raise task_not_found(key)
                return LogChunk("", offset, offset, 0, False)
            chunks = tx.rows(
                f"SELECT byte_offset, data FROM task_logs WHERE {KEY_WHERE} AND try_number = ? "
                "AND byte_offset + LENGTH(data) * 4 > ? ORDER BY byte_offset",
                (*key_params(key), try_number, offset),
            )
            return slice_log(chunks, int(meta[0]), bool(meta[1]), offset, limit)

        result: LogChunk = self.sql.read(work)
        return result


def slice_log(
    chunks: list[tuple[Any, ...]], size: int, truncated: bool, offset: int, limit: int | None
) -> LogChunk:
    data = b"".join(str(text).encode("utf-8") for _, text in chunks)
    base = int(chunks[0][0]) if chunks else size
    start = max(0, offset - base)
    end = len(data) if limit is None else min(len(data), start + limit)
    piece = data[start:end]
    return LogChunk(
        piece.decode("utf-8", errors="replace"), base + start, base + end, size, truncated
    )
