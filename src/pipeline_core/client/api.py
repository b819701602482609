"""``Client``: a method for every route of the v1 API.

Methods answer the envelope's ``data`` (a dict, or a list for listings) and raise
``APIError`` with the envelope's ``code``, ``message`` and ``details`` when the server
refuses, ``ServerUnreachable`` when it does not answer. A client holds one keep-alive
connection: use one per thread. Triggers always carry an idempotency key (a fresh one unless
given), so a trigger retried after a lost answer cannot start a second run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from pipeline_core.client.accounts import Audit, Tokens
from pipeline_core.client.base import Data, Resource, run_path
from pipeline_core.client.base import quoted as _p
from pipeline_core.client.events import Event, stream
from pipeline_core.client.resources import (
    Assets,
    Backfills,
    Connections,
    Notifications,
    Pools,
    TaskInstances,
    Variables,
    Versions,
)
from pipeline_core.client.transport import Transport


@dataclass(frozen=True)
class Triggered:
    run: Data
    #: The key was used before with the same body: ``run`` is the one it created.
    replayed: bool


@dataclass(frozen=True)
class Waited:
    run: Data
    #: The timeout passed first; ``run`` is as it is now.
    timed_out: bool


class Client(Resource):
    """``base_url`` of the server, an optional bearer ``token``, ``timeout`` seconds per
    request, and ``retries`` with exponential ``backoff`` (seconds) where a retry is safe.
    DAGs and runs are its own methods; task instances, pools and backfills are reached
    through ``client.tasks``, ``client.pools``, ``client.backfills`` and
    ``client.notifications``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(Transport(base_url, token, timeout, retries, backoff))
        self.tasks = TaskInstances(self.transport)
        self.versions = Versions(self.transport)
        self.pools = Pools(self.transport)
        self.backfills = Backfills(self.transport)
        self.notifications = Notifications(self.transport)
        self.assets = Assets(self.transport)
        self.variables = Variables(self.transport)
        self.connections = Connections(self.transport)
        self.tokens = Tokens(self.transport)
        self.audit = Audit(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # --- health and DAGs -------------------------------------------------------------
    def health(self) -> Data:
        """The server's health; answered (with ``status``) even while it is degraded."""
        answer = self.transport.request("GET", "/api/v1/health", accept=(503,))
        data: Data = answer.body["data"]
        return data

    def version(self) -> Data:
        return self._one("GET", "/api/v1/version")

    def whoami(self) -> Data:
        """The account of this client's token: name, role, DAG scope, expiry."""
        return self._one("GET", "/api/v1/whoami")

    def list_dags(
        self,
        *,
        tags: Sequence[str] = (),
        is_paused: bool | None = None,
        dag_id_pattern: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Data]:
        query = {"tags": list(tags) or None, "is_paused": is_paused,
                 "dag_id_pattern": dag_id_pattern, "limit": limit, "offset": offset}  # fmt: skip
        return self._many("GET", "/api/v1/dags", query=query)

    def get_dag(self, dag_id: str) -> Data:
        return self._one("GET", f"/api/v1/dags/{_p(dag_id)}")

    def set_paused(self, dag_id: str, paused: bool) -> Data:
        path = f"/api/v1/dags/{_p(dag_id)}"
        return self._one("PATCH", path, body={"is_paused": paused})

    def import_errors(self) -> list[Data]:
        return self._many("GET", "/api/v1/import-errors", query={"limit": 1000})

    def dag_stats(self, dag_id: str, *, since: str | None = None, until: str | None = None) -> Data:
        query = {"since": since, "until": until}
        return self._one("GET", f"/api/v1/dags/{_p(dag_id)}/stats", query=query)

    def metrics(self) -> Data:
        return self._one("GET", "/api/v1/metrics")

    def openapi(self) -> Data:
        document: Data = self.transport.request("GET", "/api/v1/openapi.json").body
        return document

    # --- runs --------------------------------------------------------------------------
    def list_runs(
        self,
        dag_id: str,
        *,
        state: Sequence[str] = (),
        run_type: Sequence[str] = (),
        order_by: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Data]:
        query = {"state": list(state) or None, "run_type": list(run_type) or None,
                 "order_by": order_by, "limit": limit, "offset": offset}  # fmt: skip
        return self._many("GET", f"/api/v1/dags/{_p(dag_id)}/runs", query=query)

    def trigger_run(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: str | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> Triggered:
        """Trigger a run; ``priority``: higher runs start first (and their tries)."""
        body = {"conf": dict(conf or {}), "run_id": run_id, "logical_date": logical_date,
                "note": note, "priority": priority}  # fmt: skip
        key = idempotency_key or f"client-{uuid.uuid4()}"
        answer = self.transport.request(
            "POST",
            f"/api/v1/dags/{_p(dag_id)}/runs",
            body={k: v for k, v in body.items() if v is not None},
            headers={"Idempotency-Key": key},
        )
        meta = answer.body.get("meta") or {}
        return Triggered(answer.body["data"], bool(meta.get("idempotent_replay")))

    def get_run(self, dag_id: str, run_id: str) -> Data:
        return self._one("GET", run_path(dag_id, run_id))

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> Waited:
        """Hold until the run ends or ``timeout`` (≤ 3,600 s) passes, without polling."""
        answer = self.transport.request(
            "GET",
            f"{run_path(dag_id, run_id)}/wait",
            query={"timeout": f"{timeout:g}"},
            timeout=timeout + self.transport.timeout,
            accept=(408,),
        )
        return Waited(answer.body["data"], answer.status == 408)

    def cancel_run(self, dag_id: str, run_id: str) -> Data:
        return self._one("DELETE", run_path(dag_id, run_id))

    def retry_run(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        *,
        downstream: bool = True,
        use_latest: bool = False,
    ) -> Data:
        body = {"task_ids": list(task_ids) if task_ids is not None else None,
                "include_downstream": downstream, "use_latest": use_latest}  # fmt: skip
        return self._one("POST", f"{run_path(dag_id, run_id)}/retry", body=body)

    def mark_run(self, dag_id: str, run_id: str, state: str) -> Data:
        return self._one("PATCH", run_path(dag_id, run_id), body={"state": state})

    def set_note(self, dag_id: str, run_id: str, note: str | None) -> Data:
        return self._one("PATCH", run_path(dag_id, run_id), body={"note": note})

    def clear_run(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        *,
        only_failed: bool = False,
        include_downstream: bool = False,
        dry_run: bool = False,
        use_latest: bool = False,
    ) -> Data:
        body = {"task_ids": list(task_ids) if task_ids is not None else None,
                "only_failed": only_failed, "include_downstream": include_downstream,
                "dry_run": dry_run, "use_latest": use_latest}  # fmt: skip
        return self._one("POST", f"{run_path(dag_id, run_id)}/clear", body=body)
