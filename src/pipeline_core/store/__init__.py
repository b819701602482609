"""Persistence: the ``Store`` protocol and its backends, chosen by ``open_store(url)``."""

from pipeline_core.store.base import Store
from pipeline_core.store.factory import open_store

__all__ = ["Store", "open_store"]
