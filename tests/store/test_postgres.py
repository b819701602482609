"""PostgreSQL quirks: URLs, schemas, migrations, notify, unreachable servers."""

from __future__ import annotations

import threading

import pytest

from pipeline_core.errors import StoreUnavailable
from pipeline_core.store import open_store
from pipeline_core.store.postgres.store import PostgresStore
from pipeline_core.store.sql.schema import SCHEMA_VERSION
from tests.conftest import postgres_or_skip
from tests.store.helpers import (
    upgrading_to_listings_reads_what_they_show,
    upgrading_to_map_indexes_keeps_every_instance,
    upgrading_to_rollups_lets_old_dags_be_searched,
    upgrading_to_task_totals_counts_the_history,
)


def test_unreachable_server_is_unavailable_with_a_masked_password():
    with pytest.raises(StoreUnavailable) as info:
        open_store("postgresql://user:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(info.value)
    assert "postgresql://user:***@127.0.0.1:1/nowhere" in str(info.value)


def test_schema_is_created_and_migrated(pg_url):
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_older_schema_is_upgraded_and_newer_refused(pg_url):
    PostgresStore(pg_url, migrate_to=1).close()
    store = PostgresStore(pg_url)
    assert store.schema_version() == SCHEMA_VERSION
    store.sql.write(
        lambda tx, _: tx.run(
            "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,)
        )
    )
    store.close()
    with pytest.raises(StoreUnavailable, match="newer than this pipeline-core"):
        PostgresStore(pg_url)


def test_upgrading_to_task_totals_counts_the_existing_history(pg_url):
    upgrading_to_task_totals_counts_the_history(lambda **options: PostgresStore(pg_url, **options))


def test_notify_wakes_a_waiter_in_another_store(pg_url):
    writer, reader = open_store(pg_url), open_store(pg_url)
    try:
        assert reader.supports_notify is True
        timer = threading.Timer(0.3, lambda: writer.events.append_event("ping", {}))
        timer.start()
        assert reader.wait_for_events(0, timeout=10) is True
        timer.join()
    finally:
        writer.close()
        reader.close()


def test_invalid_schema_name():
    postgres_or_skip()
    from pipeline_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="invalid schema name"):
        open_store("postgresql://postgres@127.0.0.1/test?schema=x;drop")


def test_the_connection_pool_is_sized_for_the_process(pg_url):
    from pipeline_core.store import open_store

    store = open_store(pg_url, connections=20)
    try:
        assert store.pool.max_size == 20  # type: ignore[attr-defined]
    finally:
        store.close()


def test_upgrading_to_map_indexes_keeps_every_instance(pg_url):
    upgrading_to_map_indexes_keeps_every_instance(
        lambda **options: PostgresStore(pg_url, **options)
    )


def test_upgrading_to_rollups_lets_old_dags_be_searched(pg_url):
    upgrading_to_rollups_lets_old_dags_be_searched(
        lambda **options: PostgresStore(pg_url, **options)
    )


def test_upgrading_to_listings_reads_what_they_show(pg_url):
    upgrading_to_listings_reads_what_they_show(lambda **options: PostgresStore(pg_url, **options))
