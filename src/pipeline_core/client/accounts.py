"""``client.tokens`` and ``client.audit``: the API's accounts (an admin's), and
``client.whoami()``."""

from __future__ import annotations

import builtins

from pipeline_core.client.base import Data, Resource
from pipeline_core.client.base import quoted as _p


class Tokens(Resource):
    """``/api/v1/tokens``: named tokens with a role (the plain token only in ``create``)."""

    def list(self) -> builtins.list[Data]:
        return self._many("GET", "/api/v1/tokens")

    def create(
        self, name: str, role: str, *, expires_in: str | None = None, dags_tag: str | None = None
    ) -> Data:
        body = {"name": name, "role": role, "expires_in": expires_in, "dags_tag": dags_tag}
        return self._one("POST", "/api/v1/tokens", body={k: v for k, v in body.items() if v})

    def revoke(self, name: str) -> Data:
        return self._one("DELETE", f"/api/v1/tokens/{_p(name)}")


class Audit(Resource):
    """``/api/v1/audit``: requests that changed something, newest first."""

    def list(
        self, *, actor: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[Data]:
        query = {"actor": actor, "limit": limit, "offset": offset}
        return self._many(
            "GET", "/api/v1/audit", query={k: v for k, v in query.items() if v is not None}
        )
