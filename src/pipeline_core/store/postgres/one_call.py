"""Writes of runs and task instances in one round trip: the PL/pgSQL functions
(``functions.py``) do in one call what the SQL path does statement by statement, and the
events they appended are announced as the SQL path announces its own. Writes of a DAG that
has notification rules take the SQL path, whose transactions write the outbox too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline_core.model import TaskChange, TaskInstance, Write
from pipeline_core.store.postgres.writes import (
    dag_ids,
    events_of,
    may_go_in_one_call,
    writes_json,
)
from pipeline_core.store.sql.core import Sql
from pipeline_core.store.sql.rows import ti_from_row
from pipeline_core.store.sql.runs import RunsSql
from pipeline_core.store.sql.tasks import TasksSql

if TYPE_CHECKING:
    from pipeline_core.store.postgres.store import PostgresDatabase


class OneCallRuns(RunsSql):
    def __init__(self, sql: Sql, database: PostgresDatabase) -> None:
        super().__init__(sql)
        self.database = database

    def apply(self, writes: Sequence[Write], *, now: datetime | None = None) -> None:
        """A wake-up's writes in one call of ``pipeline_core_apply``: one round trip and one
        transaction, its events and ``NOTIFY`` included; the SQL path when the function
        refuses (something not as expected: it wrote nothing)."""
        if may_go_in_one_call(writes) and self.sql.outbox.may_skip(dag_ids(writes), self.sql.read):
            at = now or self.sql.clock()
            rows = self.database.call("pipeline_core_apply", writes_json(writes, at), at)
            if rows is not None:
                last = int(rows[-1][2])
                self.sql.announce(last, events_of(writes, [(r[0], r[1]) for r in rows], last, at))
                return
        super().apply(writes, now=now)


class OneCallTasks(TasksSql):
    def __init__(self, sql: Sql, database: PostgresDatabase) -> None:
        super().__init__(sql)
        self.database = database

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        if may_go_in_one_call(changes) and self.sql.outbox.may_skip(
            dag_ids(changes), self.sql.read
        ):
            at = self.sql.clock()
            rows = self.database.call("pipeline_core_move_tasks", writes_json(changes, at), at)
            if rows is not None:
                after = [ti_from_row(row[:12]) for row in rows]
                tries = [(ti.try_number, ti.error) for ti in after]
                last = int(rows[-1][12])
                self.sql.announce(last, events_of(changes, tries, last, at))
                return after
        return super().transition_tasks(changes)
