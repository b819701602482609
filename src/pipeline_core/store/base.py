"""The ``Store`` protocol: the one contract every persistence backend implements.

Contracts that hold for every backend (and that ``tests/store/test_conformance.py`` checks):

* Every method is one transaction: it happens completely or not at all.
* Every state change appends its event in the same transaction. Event ``seq`` numbers are
  strictly increasing and commit-ordered: no reader can see ``seq`` N+1 before N.
* Missing things raise ``NotFound``; duplicates and lost compare-and-set races raise
  ``Conflict``; transitions the state machine forbids raise ``InvalidTransition`` (a
  ``Conflict``); an unreachable or broken database raises ``StoreUnavailable``.
* Values that are not JSON-serialisable (conf, XCom, definitions) raise ``InvalidRequest``
  before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pipeline_core.events import Event
from pipeline_core.store.accounts import AccountStore
from pipeline_core.store.assets import AssetStore
from pipeline_core.store.credentials import CredentialStore
from pipeline_core.store.dags import DagStore
from pipeline_core.store.parts import (
    BackfillStore,
    EventStore,
    HeartbeatStore,
    NotificationStore,
    PoolStore,
    RunStore,
    TaskDataStore,
    TaskStore,
    TryStore,
)
from pipeline_core.store.retention import RetentionStore

if TYPE_CHECKING:
    from pipeline_core.store.claims import Claim
    from pipeline_core.store.feed import EventFeed

DEFAULT_LOG_CAP_BYTES = 4 * 1024 * 1024


class Store(Protocol):
    """Durable state of DAGs, runs, task instances, XCom, pools, logs and the event log."""

    url: str
    #: Whether ``wait_for_events`` is woken by the database itself (LISTEN/NOTIFY) rather
    #: than by polling.
    supports_notify: bool

    @property
    def runs(self) -> RunStore: ...

    @property
    def tasks(self) -> TaskStore: ...

    @property
    def task_data(self) -> TaskDataStore: ...

    @property
    def dags(self) -> DagStore: ...

    @property
    def pools(self) -> PoolStore: ...

    @property
    def heartbeats(self) -> HeartbeatStore: ...

    @property
    def tries(self) -> TryStore: ...

    @property
    def backfills(self) -> BackfillStore: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def notifications(self) -> NotificationStore: ...

    @property
    def assets(self) -> AssetStore: ...

    @property
    def credentials(self) -> CredentialStore: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def retention(self) -> RetentionStore: ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the database does not answer."""
        ...

    def add_listener(self, listener: Callable[[list[Event]], None]) -> None:
        """Call ``listener(events)`` after every commit of this store object that appended
        events (in the committing thread; it must be quick and must not raise)."""
        ...

    def remove_listener(self, listener: Callable[[list[Event]], None]) -> None: ...

    @property
    def feed(self) -> EventFeed:
        """The one way consumers follow committed events (see ``store.feed``); shared by
        every consumer of this store object, closed with it."""
        ...

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None:
        """Claim ``name`` for this process, or ``None`` when another holds it. The claim
        ends with ``release()`` or with the process; ``on_lost`` is called should the
        database end it first (a PostgreSQL connection lost)."""
        ...

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Block until an event after ``after_seq`` may exist or ``timeout`` passes."""
        ...
