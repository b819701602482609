"""The Celery application both sides share: one task name, JSON messages, late acks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline_core.errors import ConfigurationError
from pipeline_core.store.sql.common import masked_url

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "pipeline_core.run_try"
DEFAULT_QUEUE = "pipeline-core"


@dataclass(frozen=True)
class CelerySettings:
    broker_url: str
    #: Redis: seconds before a message a worker took but never acknowledged goes out again
    #: (RabbitMQ redelivers as soon as the worker's connection drops).
    visibility_timeout: float = 3600.0
    #: Send each try to the queue of its pool (``pipeline-core.<pool>``) instead of one queue.
    queue_per_pool: bool = False
    #: A worker whose heartbeat is older than this has lost the tries it claimed.
    worker_lost_after: float = 30.0
    #: Seconds to wait for the broker at start before refusing to run.
    connect_timeout: float = 5.0


def queue_for(pool: str, settings: CelerySettings) -> str:
    return f"{DEFAULT_QUEUE}.{pool}" if settings.queue_per_pool else DEFAULT_QUEUE


def make_app(settings: CelerySettings) -> Celery:
    """A Celery app for ``settings.broker_url``; ``ConfigurationError`` without the extra."""
    try:
        from celery import Celery
    except ImportError:
        raise ConfigurationError(
            "the Celery executor needs the 'celery' extra: pip install 'pipeline-core[celery]'"
        ) from None
    app = Celery("pipeline_core", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.connect_timeout,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


def check_broker(app: Celery, settings: CelerySettings) -> None:
    """Connect once; ``ConfigurationError`` naming the broker (password masked) if it does
    not answer within ``connect_timeout``."""
    url = masked_url(settings.broker_url)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=settings.connect_timeout)
    except Exception as exc:  # kombu raises its own, the transport's and socket errors
        raise ConfigurationError(
            f"cannot reach the Celery broker {url}: {exc}", details={"broker": url}
        ) from None
