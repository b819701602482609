"""The pools, backfills and event-stream part of ``Client``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pipeline_core.client.base import ClientBase, Data
from pipeline_core.client.base import quoted as _p
from pipeline_core.client.events import Event, stream


class AdminRoutes(ClientBase):
    # --- pools -----------------------------------------------------------------------------
    def list_pools(self) -> list[Data]:
        return self._many("GET", "/api/v1/pools", query={"limit": 1000})

    def create_pool(self, name: str, slots: int, description: str | None = None) -> Data:
        body = {
            "name": name,
            "slots": slots,
            **({"description": description} if description else {}),
        }
        return self._one("POST", "/api/v1/pools", body=body)

    def update_pool(
        self, name: str, *, slots: int | None = None, description: str | None = None
    ) -> Data:
        body = {k: v for k, v in (("slots", slots), ("description", description)) if v is not None}
        return self._one("PATCH", f"/api/v1/pools/{_p(name)}", body=body)

    def delete_pool(self, name: str) -> Data:
        return self._one("DELETE", f"/api/v1/pools/{_p(name)}")

    # --- backfills -------------------------------------------------------------------------
    def create_backfill(
        self, dag_id: str, start: str, end: str, *, max_active_runs: int = 10,
        reprocess: str = "none", dry_run: bool = False,
    ) -> Data:  # fmt: skip
        body = {"from": start, "to": end, "max_active_runs": max_active_runs,
                "reprocess": reprocess, "dry_run": dry_run}  # fmt: skip
        return self._one("POST", f"/api/v1/dags/{_p(dag_id)}/backfills", body=body)

    def list_backfills(self, dag_id: str, *, state: str | None = None) -> list[Data]:
        path = f"/api/v1/dags/{_p(dag_id)}/backfills"
        return self._many("GET", path, query={"state": state, "limit": 1000})

    def get_backfill(self, dag_id: str, backfill_id: int) -> Data:
        return self._one("GET", f"/api/v1/dags/{_p(dag_id)}/backfills/{backfill_id}")

    def cancel_backfill(self, dag_id: str, backfill_id: int) -> Data:
        return self._one("DELETE", f"/api/v1/dags/{_p(dag_id)}/backfills/{backfill_id}")

    # --- the event stream ----------------------------------------------------------------
    def events(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        types: Sequence[str] = (),
        last_event_id: int | None = None,
        max_tries: int = 10,
        read_timeout: float = 60.0,
        until: float | None = None,
        resume: bool = True,
    ) -> Iterator[Event]:
        """Events as they happen (after ``last_event_id`` when given), resumed from the last
        id after a dropped connection; ends only when the caller stops reading, or with
        ``StreamTimedOut`` once ``until`` (a ``time.monotonic()`` deadline) passes."""
        query = {"dag_id": dag_id, "run_id": run_id, "types": ",".join(types) or None}
        return stream(
            self.transport,
            query,
            last_event_id,
            max_tries=max_tries,
            read_timeout=read_timeout,
            until=until,
            resume=resume,
        )
