"""Claims over every backend: one holder at a time, and a claim ends with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pipeline_core.store import open_store
from tests.conftest import poll_until


def test_one_holder_at_a_time_and_a_release_frees_it(store):
    first = store.claim("active-engine")
    assert first is not None and first.name == "active-engine"
    assert store.claim("active-engine") is None
    other = store.claim("something-else")
    assert other is not None
    first.release()
    again = store.claim("active-engine")
    assert again is not None
    again.release()
    other.release()


HOLDER = (
    "import sys, time; from pipeline_core.store import open_store; "
    "claim = open_store(sys.argv[1]).claim('active-engine'); "
    "print('held' if claim else 'refused', flush=True); time.sleep(120)"
)


def test_a_claim_ends_with_a_holder_killed_by_sigkill(sql_store):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, sql_store.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert sql_store.claim("active-engine") is None
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        claims = []
        poll_until(lambda: bool(claims.append(sql_store.claim("active-engine")) or claims[-1]))
        claims[-1].release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
        if holder.stdout:
            holder.stdout.close()


def test_an_in_memory_claim_is_per_store():
    a, b = open_store("memory://"), open_store("memory://")
    held = a.claim("x")
    assert held is not None and b.claim("x") is not None  # two databases, two claims
    held.release()
    a.close()
    b.close()


def test_postgres_claims_of_two_schemas_in_one_database_are_apart(request):
    """Advisory locks belong to the database: each schema's store must have its own."""
    first_url, second_url = request.getfixturevalue("pg_url"), None
    from tests.conftest import PG_DSN

    second_url = f"{PG_DSN}?schema=t_apart_{os.getpid()}"
    first, second = open_store(first_url), open_store(second_url)
    try:
        held = first.claim("active-engine")
        other = second.claim("active-engine")
        assert held is not None and other is not None
        assert first.claim("active-engine") is None
        held.release()
        other.release()
    finally:
        first.close()
        second.close()
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "t_apart_{os.getpid()}" CASCADE')
