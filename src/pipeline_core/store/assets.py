"""The store's part for assets (``store.assets``): the protocol every backend implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pipeline_core.store.types import AssetInfo, AssetUpdate, Page


class AssetStore(Protocol):
    """Asset updates and the updates waiting for the DAGs scheduled on their assets."""

    def post_update(
        self, uri: str, extra: Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> tuple[AssetUpdate, bool]:
        """Record an update from outside, queued for every DAG scheduled on ``uri``; with
        ``key``, a repeat answers the first update (and ``True``)."""
        ...

    def waiting(self, dag_id: str) -> list[AssetUpdate]:
        """The updates queued for ``dag_id``, oldest first."""
        ...

    def consumers_waiting(self) -> list[str]:
        """The DAGs with queued updates."""
        ...

    def list_updates(
        self, uri: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> Page[AssetUpdate]: ...

    def list_assets(self) -> list[AssetInfo]: ...
