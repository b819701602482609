"""Brokers for the Celery tests: the machine's Redis (6379) and RabbitMQ (5672). A test that
needs one fails in CI when it does not answer, and skips with the reason elsewhere."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RABBITMQ_URL, REDIS_URL, broker_or_skip


@pytest.fixture
def redis_url() -> str:
    return broker_or_skip(REDIS_URL)


@pytest.fixture
def rabbitmq_url() -> str:
    return broker_or_skip(RABBITMQ_URL)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield broker_or_skip(REDIS_URL if request.param == "redis" else RABBITMQ_URL)
