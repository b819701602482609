"""Versioned schema migrations shared by the SQL backends.

Each migration is a list of statements; ``{serial}``, ``{bool}`` and ``{text}`` are replaced
with the backend's type names. A database records the versions it has in ``schema_version``.
Add new versions at the end; never edit a released one.
"""

from __future__ import annotations

from typing import Any

from pipeline_core.errors import StoreUnavailable

MIGRATIONS: list[list[str]] = [
    # 1: the tables
    [
        "CREATE TABLE dags (dag_id {text} PRIMARY KEY, is_paused {bool} NOT NULL, "
        "is_active {bool} NOT NULL, fileloc {text}, schedule {text}, timezone {text} NOT NULL, "
        "description {text}, tags {text} NOT NULL, definition_hash {text}, definition {text}, "
        "task_count INTEGER NOT NULL, last_parsed_at {text})",
        "CREATE TABLE dag_runs (id {serial} PRIMARY KEY, dag_id {text} NOT NULL, "
        "run_id {text} NOT NULL, state {text} NOT NULL, run_type {text} NOT NULL, "
        "logical_date {text} NOT NULL, conf {text} NOT NULL, note {text}, queued_at {text}, "
        "start_date {text}, end_date {text}, duration_ms BIGINT, UNIQUE (dag_id, run_id))",
        "CREATE TABLE task_instances (run_pk BIGINT NOT NULL REFERENCES dag_runs (id), "
        "ordinal INTEGER NOT NULL, dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "task_id {text} NOT NULL, state {text} NOT NULL, try_number INTEGER NOT NULL, "
        "max_tries INTEGER NOT NULL, pool {text} NOT NULL, priority_weight INTEGER NOT NULL, "
        "start_date {text}, end_date {text}, duration_ms BIGINT, error {text}, "
        "PRIMARY KEY (dag_id, run_id, task_id))",
        "CREATE TABLE xcom (dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "task_id {text} NOT NULL, key {text} NOT NULL, value {text} NOT NULL, "
        "size_bytes INTEGER NOT NULL, timestamp {text} NOT NULL, "
        "PRIMARY KEY (dag_id, run_id, task_id, key))",
        "CREATE TABLE pools (name {text} PRIMARY KEY, slots INTEGER NOT NULL, description {text})",
        "INSERT INTO pools (name, slots, description) VALUES ('default_pool', 16, 'Default pool')",
        "CREATE TABLE task_logs (dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "task_id {text} NOT NULL, try_number INTEGER NOT NULL, byte_offset BIGINT NOT NULL, "
        "data {text} NOT NULL, PRIMARY KEY (dag_id, run_id, task_id, try_number, byte_offset))",
        "CREATE TABLE log_sizes (dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "task_id {text} NOT NULL, try_number INTEGER NOT NULL, size BIGINT NOT NULL, "
        "truncated {bool} NOT NULL, PRIMARY KEY (dag_id, run_id, task_id, try_number))",
        "CREATE TABLE heartbeats (component_id {text} PRIMARY KEY, kind {text} NOT NULL, "
        "hostname {text} NOT NULL, pid INTEGER NOT NULL, last_heartbeat {text} NOT NULL)",
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, type {text} NOT NULL, "
        "timestamp {text} NOT NULL, dag_id {text}, run_id {text}, task_id {text}, "
        "payload {text} NOT NULL)",
        "CREATE TABLE event_counter (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL)",
        "INSERT INTO event_counter (id, seq) VALUES (1, 0)",
    ],
    # 2: an index for every query the store makes
    [
        "CREATE UNIQUE INDEX dag_runs_scheduled_date ON dag_runs (dag_id, logical_date) "
        "WHERE run_type = 'scheduled'",
        "CREATE INDEX dag_runs_by_logical_date ON dag_runs (dag_id, logical_date, id)",
        "CREATE INDEX dag_runs_by_start_date ON dag_runs (dag_id, start_date, id)",
        "CREATE INDEX dag_runs_by_end_date ON dag_runs (dag_id, end_date, id)",
        "CREATE INDEX dag_runs_by_duration ON dag_runs (dag_id, duration_ms, id)",
        "CREATE INDEX dag_runs_by_state ON dag_runs (dag_id, state, logical_date, id)",
        "CREATE INDEX dag_runs_state ON dag_runs (state)",
        "CREATE INDEX task_instances_by_run ON task_instances (run_pk, ordinal)",
        "CREATE INDEX task_instances_history ON task_instances (dag_id, task_id, run_pk)",
        "CREATE INDEX task_instances_by_state ON task_instances (state, pool)",
        "CREATE INDEX events_by_dag ON events (dag_id, seq)",
        "CREATE INDEX events_by_run ON events (run_id, seq)",
    ],
    # 3: DAG files that failed to load
    [
        "CREATE TABLE import_errors (filename {text} PRIMARY KEY, issues {text} NOT NULL, "
        "seen_at {text} NOT NULL)",
    ],
    # 4: per-task statistics read from an index instead of the table
    [
        "CREATE INDEX task_instances_stats ON task_instances "
        "(dag_id, task_id, try_number, state, duration_ms, end_date)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(tx: Any, url: str, target: int, types: dict[str, str]) -> None:
    """Bring the schema in ``tx``'s database up to ``target``; refuse a newer one."""
    tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = int(tx.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0)
    if current > SCHEMA_VERSION:
        raise newer_schema_error(url, current)
    for version in range(current + 1, target + 1):
        for statement in MIGRATIONS[version - 1]:
            tx.run(statement.format(**types))
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))


def newer_schema_error(url: str, found: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"database {url} has schema version {found}, newer than this pipeline-core knows "
        f"({SCHEMA_VERSION}); upgrade pipeline-core to open it",
        details={"schema_version": found, "supported": SCHEMA_VERSION},
    )
