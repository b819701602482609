"""``BackfillDriver``: makes the runs of running backfills, ``max_active_runs`` at a time.

The scheduler calls ``step`` on every pass of its loop (a finished run, a new or cancelled
backfill and its heartbeat each bring one). A date's run has a fixed id,
``backfill__<logical date>__<backfill id>``, so a driver that stopped between creating a run
and recording it finds the run on its next step and records it instead of making another.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound, PipelineError
from pipeline_core.model import RunType, TriggerRequest, iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import Backfill

logger = logging.getLogger("pipeline_core.scheduler")


def backfill_run_id(backfill_id: int, logical_date: datetime) -> str:
    return f"backfill__{iso(logical_date)}__{backfill_id}"


class BackfillDriver:
    def __init__(self, store: Store, runner: Control) -> None:
        self.store = store
        self.runner = runner

    def step(self) -> None:
        for backfill in self.store.backfills.list_backfills(state="running"):
            try:
                self._advance(backfill)
            except PipelineError as exc:
                logger.warning("backfill %d of %s waits: %s", backfill.id, backfill.dag_id, exc)

    def _advance(self, backfill: Backfill) -> None:
        waiting = backfill.waiting
        if not waiting and not backfill.active:
            self.store.backfills.end_backfill(backfill.id, "completed")
            logger.info("backfill %d of %s completed", backfill.id, backfill.dag_id)
            return
        for logical_date in waiting[: max(0, backfill.max_active_runs - backfill.active)]:
            run_id = backfill_run_id(backfill.id, logical_date)
            try:
                self.runner.trigger(
                    TriggerRequest(
                        backfill.dag_id,
                        run_id=run_id,
                        logical_date=logical_date,
                        run_type=RunType.BACKFILL,
                        note=f"backfill {backfill.id}",
                    )
                )
            except Conflict:
                self.store.runs.get_run(backfill.dag_id, run_id)  # made before a restart: ours
            self.store.backfills.set_backfill_run(backfill.id, logical_date, run_id)
        if (
            self.store.backfills.get_backfill(backfill.id).state == "cancelled"
        ):  # cancelled meanwhile
            cancel_active(self.store, self.runner, backfill.id)


def cancel_active(store: Store, runner: Control, backfill_id: int) -> None:
    """Cancel the backfill's queued and running runs."""
    backfill = store.backfills.get_backfill(backfill_id)
    for date in backfill.dates:
        if date.run_id is not None and date.run_state in ("queued", "running"):
            with contextlib.suppress(Conflict, NotFound):  # it ended meanwhile
                runner.cancel(backfill.dag_id, date.run_id)
