"""The resources of the API a ``Client`` reaches through its attributes: ``client.tasks``
(task instances, their XCom and logs), ``client.versions`` (a DAG's versions),
``client.pools``, ``client.backfills`` and ``client.notifications``."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline_core.client.base import Data, Resource, run_path
from pipeline_core.client.base import quoted as _p
from pipeline_core.client.transport import error_of

#: Seconds a followed log may stay silent (a quiet task) before the client gives up.
FOLLOW_TIMEOUT = 3600.0


class Pools(Resource):
    """``/api/v1/pools``: pools of slots."""

    def list(self) -> list[Data]:
        return self._many("GET", "/api/v1/pools", query={"limit": 1000})

    def create(
        self, name: str, slots: int, description: str | None = None, *,
        rate: str | None = None, burst: int = 1,
    ) -> Data:  # fmt: skip
        """A pool; ``rate`` (``"100/m"``) limits how many of its tries start, ``burst`` at once."""
        body = {
            "name": name,
            "slots": slots,
            **({"description": description} if description else {}),
            **({"rate": rate, "burst": burst} if rate else {}),
        }
        return self._one("POST", "/api/v1/pools", body=body)

    def update(
        self, name: str, *, slots: int | None = None, description: str | None = None,
        rate: str | None = None, burst: int | None = None,
    ) -> Data:  # fmt: skip
        """Change what is given; ``rate=""`` takes the rate limit off."""
        given = (("slots", slots), ("description", description), ("rate", rate), ("burst", burst))
        body = {k: v for k, v in given if v is not None}
        return self._one("PATCH", f"/api/v1/pools/{_p(name)}", body=body)

    def delete(self, name: str) -> Data:
        return self._one("DELETE", f"/api/v1/pools/{_p(name)}")


class Notifications(Resource):
    """``/api/v1/notifications``: the notification outbox and redelivery."""

    def list(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Data]:
        query = {"dag_id": dag_id, "run_id": run_id, "state": state, "limit": limit}
        return self._many(
            "GET", "/api/v1/notifications", query={k: v for k, v in query.items() if v is not None}
        )

    def get(self, notification_id: str) -> Data:
        return self._one("GET", f"/api/v1/notifications/{_p(notification_id)}")

    def redeliver(self, notification_id: str) -> Data:
        return self._one("POST", f"/api/v1/notifications/{_p(notification_id)}/redeliver")


class Assets(Resource):
    """``/api/v1/assets``: assets, their updates, and updates made from outside."""

    def list(self) -> builtins.list[Data]:
        return self._many("GET", "/api/v1/assets")

    def events(self, uri: str | None = None, *, limit: int = 100) -> builtins.list[Data]:
        query = {"uri": uri, "limit": limit}
        return self._many(
            "GET", "/api/v1/assets/events", query={k: v for k, v in query.items() if v is not None}
        )

    def post(
        self, uri: str, extra: dict[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> Data:
        """Record an update of ``uri``; with a key, a repeat answers the first update."""
        body: dict[str, Any] = {"uri": uri, "extra": extra or {}}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._one("POST", "/api/v1/assets/events", body=body)


class Variables(Resource):
    """``/api/v1/variables``: shared settings (secret values answered as ``***``)."""

    def list(self, *, limit: int = 1000, offset: int = 0) -> builtins.list[Data]:
        return self._many("GET", "/api/v1/variables", query={"limit": limit, "offset": offset})

    def get(self, key: str) -> Data:
        return self._one("GET", f"/api/v1/variables/{_p(key)}")

    def set(
        self, key: str, value: Any, *, secret: bool | None = None, description: str | None = None
    ) -> Data:
        body: dict[str, Any] = {"value": value}
        if secret is not None:
            body["secret"] = secret
        if description is not None:
            body["description"] = description
        return self._one("PUT", f"/api/v1/variables/{_p(key)}", body=body)

    def delete(self, key: str) -> Data:
        return self._one("DELETE", f"/api/v1/variables/{_p(key)}")


class Connections(Resource):
    """``/api/v1/connections``: connections to other systems (passwords answered ``***``)."""

    def list(self, *, limit: int = 1000, offset: int = 0) -> builtins.list[Data]:
        return self._many("GET", "/api/v1/connections", query={"limit": limit, "offset": offset})

    def get(self, conn_id: str) -> Data:
        return self._one("GET", f"/api/v1/connections/{_p(conn_id)}")

    def set(self, conn_id: str, *, uri: str | None = None, **fields: Any) -> Data:
        body = {"uri": uri} if uri is not None else fields
        return self._one("PUT", f"/api/v1/connections/{_p(conn_id)}", body=body)

    def delete(self, conn_id: str) -> Data:
        return self._one("DELETE", f"/api/v1/connections/{_p(conn_id)}")


class Backfills(Resource):
    """``/api/v1/dags/{dag_id}/backfills``: runs for a range of past fire times."""

    def create(
        self, dag_id: str, start: str, end: str, *, max_active_runs: int = 10,
        reprocess: str = "none", dry_run: bool = False,
    ) -> Data:  # fmt: skip
        body = {"from": start, "to": end, "max_active_runs": max_active_runs,
                "reprocess": reprocess, "dry_run": dry_run}  # fmt: skip
        return self._one("POST", f"/api/v1/dags/{_p(dag_id)}/backfills", body=body)

    def list(self, dag_id: str, *, state: str | None = None) -> list[Data]:
        path = f"/api/v1/dags/{_p(dag_id)}/backfills"
        return self._many("GET", path, query={"state": state, "limit": 1000})

    def get(self, dag_id: str, backfill_id: int) -> Data:
        return self._one("GET", f"/api/v1/dags/{_p(dag_id)}/backfills/{backfill_id}")

    def cancel(self, dag_id: str, backfill_id: int) -> Data:
        return self._one("DELETE", f"/api/v1/dags/{_p(dag_id)}/backfills/{backfill_id}")


class Versions(Resource):
    """``/api/v1/dags/{dag_id}/versions``: every distinct definition a DAG has had."""

    def list(self, dag_id: str, *, limit: int = 100, offset: int = 0) -> builtins.list[Data]:
        path = f"/api/v1/dags/{_p(dag_id)}/versions"
        return self._many("GET", path, query={"limit": limit, "offset": offset})

    def get(self, dag_id: str, version: str, *, diff_from: str | None = None) -> Data:
        """One version (its hash or a prefix of at least 6 characters) with its file's
        text; ``diff_from``: also a unified diff from that version."""
        path = f"/api/v1/dags/{_p(dag_id)}/versions/{_p(version)}"
        return self._one("GET", path, query={"diff_from": diff_from})


class TaskInstances(Resource):
    """``.../runs/{run_id}/tasks``: task instances, their XCom and their logs. ``map_index``
    names one instance of a mapped task."""

    def list(self, dag_id: str, run_id: str) -> list[Data]:
        path = f"{run_path(dag_id, run_id)}/tasks"
        return self._many("GET", path, query={"limit": 1000})

    def mapped(
        self, dag_id: str, run_id: str, task_id: str, *, state: Sequence[str] = (),
        limit: int = 1000, offset: int = 0,
    ) -> builtins.list[Data]:  # fmt: skip
        """A page of a mapped task's instances, in index order."""
        query = {"state": list(state) or None, "limit": limit, "offset": offset}
        return self._many("GET", f"{_task_path(dag_id, run_id, task_id)}/mapped", query=query)

    def get(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> Data:
        return self._one("GET", _task_path(dag_id, run_id, task_id, map_index))

    def mark(
        self, dag_id: str, run_id: str, task_id: str, state: str, *, map_index: int = -1
    ) -> Data:
        path = _task_path(dag_id, run_id, task_id, map_index)
        return self._one("PATCH", path, body={"state": state})

    def clear(
        self, dag_id: str, run_id: str, task_id: str, map_index: int, *,
        include_downstream: bool = True,
    ) -> Data:  # fmt: skip
        """Run one finished instance of a mapped task again (its task's downstream after it
        unless ``include_downstream`` is false)."""
        path = f"{_task_path(dag_id, run_id, task_id, map_index)}/clear"
        return self._one("POST", path, body={"include_downstream": include_downstream})

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, keys: Sequence[str] = (),
        *, map_index: int = -1,
    ) -> builtins.list[Data]:  # fmt: skip
        path = f"{_task_path(dag_id, run_id, task_id, map_index)}/xcom"
        return self._many("GET", path, query={"key": list(keys) or None})

    def log(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int | None = None,
        offset: int = 0, limit: int | None = None, map_index: int = -1,
    ) -> Data:  # fmt: skip
        query = {"try_number": try_number, "offset": offset, "limit": limit}
        path = f"{_task_path(dag_id, run_id, task_id, map_index)}/logs"
        return self._one("GET", path, query=query)

    def follow_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        *,
        try_number: int | None = None,
        offset: int = 0,
        map_index: int = -1,
    ) -> Iterator[str]:
        """The try's log as it is written, piece by piece, until the try ends."""
        path = f"{_task_path(dag_id, run_id, task_id, map_index)}/logs"
        query = {"follow": True, "try_number": try_number, "offset": offset}
        connection = self.transport.connect(FOLLOW_TIMEOUT)
        try:
            target = self.transport.path(path, query)
            connection.request("GET", target, headers=self.transport.headers())
            response = connection.getresponse()
            if response.status != 200:
                body = response.read()
                payload = json.loads(body) if body.startswith(b"{") else body
                headers = {k.lower(): v for k, v in response.getheaders()}
                raise error_of(response.status, payload, headers)
            while piece := response.read1(65536):
                yield piece.decode("utf-8", errors="replace")
        finally:
            connection.close()


def _task_path(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    path = f"{run_path(dag_id, run_id)}/tasks/{_p(task_id)}"
    return path if map_index < 0 else f"{path}/mapped/{map_index}"
