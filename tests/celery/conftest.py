"""Brokers for the Celery tests: the machine's Redis (6379) and RabbitMQ (5672). A test that
needs one fails in CI when it does not answer, and skips with the reason elsewhere."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI

REDIS_URL = os.environ.get("PIPELINE_CORE_REDIS_URL", "redis://127.0.0.1:6379/11")
RABBITMQ_URL = os.environ.get("PIPELINE_CORE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("pipeline-core", "pipeline-core.default_pool", "pipeline-core.heavy")


def _purged(url: str) -> str:
    """``url`` once it answers, with the test queues emptied of other tests' leftovers."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
            if url.startswith("redis"):
                connection.default_channel.client.flushdb()
            else:
                for queue in QUEUES:
                    channel = connection.channel()  # a purge of a missing queue closes it
                    with contextlib.suppress(Exception):
                        channel.queue_purge(queue)
    except Exception as exc:
        message = f"broker {url} is not reachable ({exc})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def redis_url() -> str:
    return _purged(REDIS_URL)


@pytest.fixture
def rabbitmq_url() -> str:
    return _purged(RABBITMQ_URL)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield _purged(REDIS_URL if request.param == "redis" else RABBITMQ_URL)
