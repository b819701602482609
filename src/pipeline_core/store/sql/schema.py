"""Versioned schema migrations shared by the SQL backends.

Each migration is a list of statements; ``{serial}``, ``{bool}`` and ``{text}`` are replaced
with the backend's type names, and a statement given as ``{dialect: statement}`` is the one for
the backend's dialect (``sqlite`` or ``postgresql``). A database records the versions it has in
``schema_version``. Add new versions at the end; never edit a released one.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from pipeline_core.errors import StoreUnavailable
from pipeline_core.store.postgres.functions import APPLY, MOVE_TASK, MOVE_TASKS

#: A statement, or the statements each dialect needs instead.
Statement: TypeAlias = str | dict[str, tuple[str, ...]]

# Triggers keep ``task_totals``: what each started task instance adds to its task's totals.
_SQLITE_TOTALS = (
    "INSERT INTO task_totals (dag_id, task_id, started, duration_sum, durations, failed, "
    "retried) SELECT {row}.dag_id, {row}.task_id, {sign}1, {sign}COALESCE({row}.duration_ms, 0), "
    "{sign}({row}.duration_ms IS NOT NULL), {sign}({row}.state = 'failed'), "
    "{sign}({row}.try_number > 1) WHERE {row}.try_number > 0 "
    "ON CONFLICT (dag_id, task_id) DO UPDATE SET started = started + excluded.started, "
    "duration_sum = duration_sum + excluded.duration_sum, "
    "durations = durations + excluded.durations, failed = failed + excluded.failed, "
    "retried = retried + excluded.retried;"
)
_PG_TOTALS = (
    "INSERT INTO task_totals AS t VALUES ({row}.dag_id, {row}.task_id, {sign}1, "
    "{sign}COALESCE({row}.duration_ms, 0), {sign}({row}.duration_ms IS NOT NULL)::int, "
    "{sign}({row}.state = 'failed')::int, {sign}({row}.try_number > 1)::int) "
    "ON CONFLICT (dag_id, task_id) DO UPDATE SET started = t.started + EXCLUDED.started, "
    "duration_sum = t.duration_sum + EXCLUDED.duration_sum, "
    "durations = t.durations + EXCLUDED.durations, failed = t.failed + EXCLUDED.failed, "
    "retried = t.retried + EXCLUDED.retried;"
)


def _sqlite_trigger(name: str, event: str, *rows: tuple[str, str]) -> str:
    body = " ".join(_SQLITE_TOTALS.format(row=row, sign=sign) for row, sign in rows)
    return f"CREATE TRIGGER {name} AFTER {event} ON task_instances BEGIN {body} END"


_TOTALS_TRIGGERS: dict[str, tuple[str, ...]] = {
    "sqlite": (
        _sqlite_trigger("task_totals_insert", "INSERT", ("new", "")),
        _sqlite_trigger(
            "task_totals_update",
            "UPDATE OF state, try_number, duration_ms",
            ("old", "-"),
            ("new", ""),
        ),
        _sqlite_trigger("task_totals_delete", "DELETE", ("old", "-")),
    ),
    "postgresql": (
        "CREATE FUNCTION task_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP <> 'INSERT' AND OLD.try_number > 0 THEN "
        f"{_PG_TOTALS.format(row='OLD', sign='-')} END IF; "
        "IF TG_OP <> 'DELETE' AND NEW.try_number > 0 THEN "
        f"{_PG_TOTALS.format(row='NEW', sign='')} END IF; RETURN NULL; END $$",
        "CREATE TRIGGER task_totals_track AFTER INSERT OR DELETE OR "
        "UPDATE OF state, try_number, duration_ms ON task_instances "
        "FOR EACH ROW EXECUTE FUNCTION task_totals_apply()",
    ),
}

#: Each table keyed by task instance, as version 11 keys it: (its columns, its new key).
_KEYED = {
    "task_instances": (
        "run_pk BIGINT NOT NULL REFERENCES dag_runs (id), ordinal INTEGER NOT NULL, "
        "dag_id {text} NOT NULL, run_id {text} NOT NULL, task_id {text} NOT NULL, "
        "state {text} NOT NULL, try_number INTEGER NOT NULL, max_tries INTEGER NOT NULL, "
        "pool {text} NOT NULL, priority_weight INTEGER NOT NULL, start_date {text}, "
        "end_date {text}, duration_ms BIGINT, error {text}",
        "dag_id, run_id, task_id, map_index",
    ),
    "xcom": (
        "dag_id {text} NOT NULL, run_id {text} NOT NULL, task_id {text} NOT NULL, "
        "key {text} NOT NULL, value {text} NOT NULL, size_bytes INTEGER NOT NULL, "
        "timestamp {text} NOT NULL",
        "dag_id, run_id, task_id, map_index, key",
    ),
    "task_logs": (
        "dag_id {text} NOT NULL, run_id {text} NOT NULL, task_id {text} NOT NULL, "
        "try_number INTEGER NOT NULL, byte_offset BIGINT NOT NULL, data {text} NOT NULL",
        "dag_id, run_id, task_id, map_index, try_number, byte_offset",
    ),
    "log_sizes": (
        "dag_id {text} NOT NULL, run_id {text} NOT NULL, task_id {text} NOT NULL, "
        "try_number INTEGER NOT NULL, size BIGINT NOT NULL, truncated {bool} NOT NULL",
        "dag_id, run_id, task_id, map_index, try_number",
    ),
    "try_claims": (
        "dag_id {text} NOT NULL, run_id {text} NOT NULL, task_id {text} NOT NULL, "
        "try_number INTEGER NOT NULL, submission {text} NOT NULL, worker_id {text} NOT NULL, "
        "claimed_at {text} NOT NULL, reported_at {text}",
        "dag_id, run_id, task_id, map_index, try_number, submission",
    ),
}


def _rekeyed_sqlite(table: str) -> tuple[str, ...]:
    """SQLite cannot change a primary key: the table is made again with ``map_index``."""
    columns, key = _KEYED[table]
    return (
        f"CREATE TABLE {table}_v11 ({columns}, map_index INTEGER NOT NULL DEFAULT -1, "
        f"PRIMARY KEY ({key}))",
        f"INSERT INTO {table}_v11 SELECT *, -1 FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_v11 RENAME TO {table}",
    )


def _rekeyed_postgres(table: str) -> tuple[str, ...]:
    return (
        f"ALTER TABLE {table} ADD COLUMN map_index INTEGER NOT NULL DEFAULT -1",
        f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey",
        f"ALTER TABLE {table} ADD PRIMARY KEY ({_KEYED[table][1]})",
    )


_MAP_INDEX: list[Statement] = [
    {
        "sqlite": (
            *(statement for table in _KEYED for statement in _rekeyed_sqlite(table)),
            "CREATE INDEX task_instances_by_run ON task_instances (run_pk, ordinal)",
            "CREATE INDEX task_instances_history ON task_instances (dag_id, task_id, run_pk)",
            "CREATE INDEX task_instances_by_state ON task_instances (state, pool)",
            "CREATE INDEX task_instances_latest ON task_instances "
            "(dag_id, task_id, state, end_date)",
            *_TOTALS_TRIGGERS["sqlite"],
            "CREATE INDEX try_claims_by_worker ON try_claims (worker_id)",
        ),
        "postgresql": (
            *(statement for table in _KEYED for statement in _rekeyed_postgres(table)),
            "DROP FUNCTION pipeline_core_apply(jsonb, text, text)",
            "DROP FUNCTION pipeline_core_move_tasks(jsonb, text, text)",
            "DROP FUNCTION pipeline_core_move_task(jsonb, text, bigint)",
            MOVE_TASK,
            MOVE_TASKS,
            APPLY,
        ),
    },
]


MIGRATIONS: list[list[Statement]] = [
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
    # 5: running totals per task, kept by triggers, so whole-history task statistics read a
    # few rows instead of every task instance; the latest success and failure come from an
    # index (version 4's index served the full scan this replaces)
    [
        "CREATE TABLE task_totals (dag_id {text} NOT NULL, task_id {text} NOT NULL, "
        "started BIGINT NOT NULL, duration_sum BIGINT NOT NULL, durations BIGINT NOT NULL, "
        "failed BIGINT NOT NULL, retried BIGINT NOT NULL, PRIMARY KEY (dag_id, task_id))",
        "INSERT INTO task_totals SELECT dag_id, task_id, COUNT(*), COALESCE(SUM(duration_ms), 0), "
        "COUNT(duration_ms), SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN try_number > 1 THEN 1 ELSE 0 END) FROM task_instances "
        "WHERE try_number > 0 GROUP BY dag_id, task_id",
        "DROP INDEX task_instances_stats",
        "CREATE INDEX task_instances_latest ON task_instances (dag_id, task_id, state, end_date)",
        _TOTALS_TRIGGERS,
    ],
    # 6: a wake-up's writes in one round trip on PostgreSQL (server-side functions)
    [
        {"sqlite": (), "postgresql": (MOVE_TASK, MOVE_TASKS, APPLY)},
    ],
    # 7: tries claimed by remote workers (the Celery executor)
    [
        "CREATE TABLE try_claims (dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "task_id {text} NOT NULL, try_number INTEGER NOT NULL, submission {text} NOT NULL, "
        "worker_id {text} NOT NULL, claimed_at {text} NOT NULL, reported_at {text}, "
        "PRIMARY KEY (dag_id, run_id, task_id, try_number, submission))",
        "CREATE INDEX try_claims_by_worker ON try_claims (worker_id)",
    ],
    # 8: idempotency keys of triggers, each held by the run it created until it expires
    [
        "CREATE TABLE idempotency_keys (dag_id {text} NOT NULL, key {text} NOT NULL, "
        "run_id {text} NOT NULL, fingerprint {text} NOT NULL, created_at {text} NOT NULL, "
        "expires_at {text} NOT NULL, PRIMARY KEY (dag_id, key))",
        "CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at)",
    ],
    # 9: backfills, and the logical dates each one runs (with the run made for each)
    [
        "CREATE TABLE backfills (id {serial} PRIMARY KEY, dag_id {text} NOT NULL, "
        "from_date {text} NOT NULL, to_date {text} NOT NULL, reprocess {text} NOT NULL, "
        "max_active_runs INTEGER NOT NULL, state {text} NOT NULL, created_at {text} NOT NULL, "
        "completed_at {text})",
        "CREATE INDEX backfills_by_state ON backfills (state, id)",
        "CREATE TABLE backfill_dates (backfill_id BIGINT NOT NULL REFERENCES backfills (id), "
        "ordinal INTEGER NOT NULL, logical_date {text} NOT NULL, run_id {text}, "
        "PRIMARY KEY (backfill_id, ordinal))",
    ],
    # 10: the notification outbox (written with the event that causes each notification),
    # its delivery attempts, and the run deadlines found missed
    [
        "CREATE TABLE notifications (id {text} PRIMARY KEY, seq BIGINT NOT NULL, "
        "event {text} NOT NULL, dag_id {text} NOT NULL, run_id {text}, task_id {text}, "
        "try_number INTEGER, rule {text} NOT NULL, target_kind {text} NOT NULL, "
        "target {text} NOT NULL, payload {text} NOT NULL, state {text} NOT NULL, "
        "attempts INTEGER NOT NULL, last_error {text}, last_status INTEGER, "
        "created_at {text} NOT NULL, due_ms BIGINT NOT NULL, lease_ms BIGINT NOT NULL, "
        "delivered_at {text})",
        "CREATE INDEX notifications_due ON notifications (state, due_ms)",
        "CREATE INDEX notifications_by_run ON notifications (dag_id, run_id, seq)",
        "CREATE INDEX notifications_by_state ON notifications (state, seq)",
        "CREATE TABLE notification_attempts (notification_id {text} NOT NULL, "
        "number INTEGER NOT NULL, at {text} NOT NULL, status INTEGER, error {text}, "
        "duration_ms BIGINT NOT NULL, PRIMARY KEY (notification_id, number))",
        "CREATE TABLE run_deadlines (dag_id {text} NOT NULL, run_id {text} NOT NULL, "
        "deadline_at {text} NOT NULL, missed_at {text} NOT NULL, PRIMARY KEY (dag_id, run_id))",
    ],
    # 11: a task instance is (dag, run, task, map_index): -1 for a task that is not mapped,
    # 0… for a mapped task's instances; so are its XComs, logs and claims
    _MAP_INDEX,
    # 12: asset updates (each an asset.updated event, its id the event's seq), the assets
    # each DAG names (scheduled on: task ''; produced: the task's id), and the updates
    # waiting for each DAG scheduled on their asset
    [
        "CREATE TABLE asset_events (id BIGINT PRIMARY KEY, uri {text} NOT NULL, "
        "extra {text} NOT NULL, dag_id {text}, run_id {text}, task_id {text}, "
        "map_index INTEGER, timestamp {text} NOT NULL, idempotency_key {text}, "
        "seq BIGINT NOT NULL)",
        "CREATE INDEX asset_events_by_uri ON asset_events (uri, id)",
        "CREATE UNIQUE INDEX asset_events_by_key ON asset_events (idempotency_key)",
        "CREATE TABLE asset_refs (dag_id {text} NOT NULL, uri {text} NOT NULL, "
        "task_id {text} NOT NULL, PRIMARY KEY (dag_id, uri, task_id))",
        "CREATE INDEX asset_refs_by_uri ON asset_refs (uri, task_id)",
        "CREATE TABLE asset_queue (dag_id {text} NOT NULL, event_id BIGINT NOT NULL, "
        "uri {text} NOT NULL, PRIMARY KEY (dag_id, event_id))",
    ],
    # 13: variables and connections (secret values and passwords sealed with the key)
    [
        "CREATE TABLE variables (key {text} PRIMARY KEY, value {text} NOT NULL, "
        "is_secret {bool} NOT NULL, description {text}, version INTEGER NOT NULL, "
        "updated_at {text} NOT NULL)",
        "CREATE TABLE connections (conn_id {text} PRIMARY KEY, conn_type {text} NOT NULL, "
        "host {text}, port INTEGER, login {text}, password {text}, schema_name {text}, "
        "extra {text} NOT NULL, description {text}, version INTEGER NOT NULL, "
        "updated_at {text} NOT NULL)",
    ],
    # 14: named API tokens (only a hash of each is kept) and the audit trail of requests
    # that change something
    [
        "CREATE TABLE api_tokens (name {text} PRIMARY KEY, token_hash {text} NOT NULL, "
        "role {text} NOT NULL, dags_tag {text}, created_at {text} NOT NULL, "
        "expires_at {text}, revoked_at {text})",
        "CREATE UNIQUE INDEX api_tokens_by_hash ON api_tokens (token_hash)",
        "CREATE TABLE audit_log (id {serial} PRIMARY KEY, at {text} NOT NULL, "
        "actor {text} NOT NULL, action {text} NOT NULL, target {text} NOT NULL, "
        "status INTEGER NOT NULL, request_id {text}, source {text})",
        "CREATE INDEX audit_log_by_actor ON audit_log (actor, id)",
    ],
    # 15: a run's priority (higher runs start first, and their tries)
    ["ALTER TABLE dag_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"],
    # 16: every distinct definition of each DAG (its source and file), the version each run
    # was made with, the one-call writes storing a run's priority and version, and a pool's
    # rate limit
    [
        "CREATE TABLE dag_versions (dag_id {text} NOT NULL, version {text} NOT NULL, "
        "first_seen {text} NOT NULL, fileloc {text}, task_count INTEGER NOT NULL, "
        "source {text}, definition {text} NOT NULL, PRIMARY KEY (dag_id, version))",
        "CREATE INDEX dag_versions_by_age ON dag_versions (dag_id, first_seen)",
        "INSERT INTO dag_versions (dag_id, version, first_seen, fileloc, task_count, source, "
        "definition) SELECT dag_id, definition_hash, "
        "COALESCE(last_parsed_at, '1970-01-01T00:00:00.000000Z'), fileloc, task_count, "
        "NULL, definition FROM dags WHERE definition_hash IS NOT NULL AND definition IS NOT NULL",
        "ALTER TABLE dag_runs ADD COLUMN dag_version {text}",
        "ALTER TABLE pools ADD COLUMN rate {text}",
        "ALTER TABLE pools ADD COLUMN burst INTEGER NOT NULL DEFAULT 1",
        {
            "sqlite": (),
            "postgresql": ("DROP FUNCTION pipeline_core_apply(jsonb, text, text)", APPLY),
        },
    ],
    # 17: what cleaned-up runs leave to the statistics, per DAG and day (UTC) of their logical
    # date: runs per state with their durations' sum, count and bounds, finished runs per
    # duration (three significant digits, for percentiles), and each task's totals as
    # ``task_totals`` counts them, with its latest success and failure; and the text a DAG
    # search reads
    [
        "CREATE TABLE run_rollups (dag_id {text} NOT NULL, day {text} NOT NULL, "
        "state {text} NOT NULL, runs BIGINT NOT NULL, duration_sum BIGINT NOT NULL, "
        "durations BIGINT NOT NULL, duration_min BIGINT, duration_max BIGINT, "
        "PRIMARY KEY (dag_id, day, state))",
        "CREATE TABLE duration_rollups (dag_id {text} NOT NULL, day {text} NOT NULL, "
        "duration_ms BIGINT NOT NULL, runs BIGINT NOT NULL, "
        "PRIMARY KEY (dag_id, day, duration_ms))",
        # a DAG's id and description lower-cased, as ``?q=`` searches them
        "ALTER TABLE dags ADD COLUMN search {text}",
        "UPDATE dags SET search = LOWER(dag_id || '\x1f' || COALESCE(description, ''))",
        "CREATE TABLE task_rollups (dag_id {text} NOT NULL, day {text} NOT NULL, "
        "task_id {text} NOT NULL, started BIGINT NOT NULL, duration_sum BIGINT NOT NULL, "
        "durations BIGINT NOT NULL, failed BIGINT NOT NULL, retried BIGINT NOT NULL, "
        "last_success {text}, last_failure {text}, PRIMARY KEY (dag_id, day, task_id))",
    ],
    # 18: what a listing shows of each DAG's definition (``rows.LISTED_KEYS``), so that a
    # page of DAGs reads no definition whole
    [
        "ALTER TABLE dags ADD COLUMN listed {text}",
        {
            "sqlite": (
                "UPDATE dags SET listed = (SELECT json_group_object(key, CASE WHEN type IN "
                "('object', 'array') THEN json(value) ELSE value END) FROM json_each(definition) "
                "WHERE key IN ('start_date', 'end_date', 'assets')) WHERE definition IS NOT NULL",
            ),
            "postgresql": (
                "UPDATE dags SET listed = COALESCE((SELECT jsonb_object_agg(key, value) "
                "FROM jsonb_each(definition::jsonb) WHERE key IN ('start_date', 'end_date', "
                "'assets'))::text, '{{}}') WHERE definition IS NOT NULL",
            ),
        },
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
            dialect = statement[types["dialect"]] if isinstance(statement, dict) else (statement,)
            for each in dialect:
                tx.run(each.format(**types))
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))


def newer_schema_error(url: str, found: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"database {url} has schema version {found}, newer than this pipeline-core knows "
        f"({SCHEMA_VERSION}); upgrade pipeline-core to open it",
        details={"schema_version": found, "supported": SCHEMA_VERSION},
    )
