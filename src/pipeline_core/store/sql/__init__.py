"""The SQL behind both relational backends, one module per aggregate.

SQLite and PostgreSQL differ only in how they connect, their DDL, placeholders and error
classes (``SqlBase._transaction`` and a few hooks); everything else is here. Statements are
written with ``?`` placeholders; a backend rewrites them once if it needs to. Timestamps are
stored as fixed-width ISO 8601 text (``iso``), so text order is time order.
"""

from __future__ import annotations

from pipeline_core.store.sql.backfills import BackfillsSql
from pipeline_core.store.sql.dags import DagsSql
from pipeline_core.store.sql.events import EventsSql
from pipeline_core.store.sql.idempotency import IdempotencySql
from pipeline_core.store.sql.pools import PoolsSql
from pipeline_core.store.sql.runs import RunsSql
from pipeline_core.store.sql.taskdata import TaskDataSql
from pipeline_core.store.sql.tries import TriesSql


class SqlStore(
    RunsSql, IdempotencySql, DagsSql, TaskDataSql, PoolsSql, TriesSql, BackfillsSql, EventsSql
):
    """The whole ``Store`` protocol in SQL, over a backend's ``_transaction``."""


__all__ = ["SqlStore"]
