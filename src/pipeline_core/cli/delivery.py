"""The options of the notification dispatcher that ``serve`` and ``scheduler`` run: the
dashboard's public URL, SMTP, and delivery timeouts, attempts and backoff. Each has an
environment variable of the same name (``PIPELINE_CORE_SMTP_HOST`` ...); the SMTP password
comes from the environment only, never from the command line."""

from __future__ import annotations

import argparse
import os

from pipeline_core.cli.common import seconds, whole_number
from pipeline_core.metrics import Metrics
from pipeline_core.notify.dispatch import DeliverySettings, Dispatcher
from pipeline_core.notify.targets import SmtpSettings, Targets
from pipeline_core.store.base import Store


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"PIPELINE_CORE_{name}", default)


def add_delivery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-url",
        default=_env("PUBLIC_URL"),
        help="the dashboard's address as receivers should link to it (env "
        "PIPELINE_CORE_PUBLIC_URL; default: this server's http://HOST:PORT)",
    )
    parser.add_argument("--smtp-host", default=_env("SMTP_HOST"), help="SMTP server for e-mail")
    parser.add_argument("--smtp-port", type=int, default=int(_env("SMTP_PORT", "25") or 25))
    parser.add_argument(
        "--smtp-from", default=_env("SMTP_FROM", "pipeline-core@localhost"), help="sender address"
    )
    parser.add_argument(
        "--smtp-starttls",
        action="store_true",
        default=(_env("SMTP_STARTTLS", "") or "").lower() in ("1", "true", "yes"),
        help="upgrade the SMTP connection with STARTTLS (default: plain SMTP)",
    )
    parser.add_argument(
        "--smtp-user",
        default=_env("SMTP_USER"),
        help="log in as this user (the password from PIPELINE_CORE_SMTP_PASSWORD)",
    )
    parser.add_argument(
        "--notify-timeout",
        type=seconds,
        default=10.0,
        help="seconds one delivery may take (default 10)",
    )
    parser.add_argument(
        "--notify-attempts",
        type=whole_number(1),
        default=12,
        help="attempts at most before a notification is failed (default 12)",
    )
    parser.add_argument(
        "--notify-backoff",
        type=seconds,
        default=1.0,
        help="seconds before the second attempt, doubling after each (default 1)",
    )
    parser.add_argument(
        "--notify-max-backoff",
        type=seconds,
        default=300.0,
        help="longest wait between attempts (default 300)",
    )


def delivery_settings(args: argparse.Namespace, port: int | None = None) -> DeliverySettings:
    """``port``: the port the dashboard was bound to, for the default public URL (the
    ``--port`` asked for may be 0)."""
    smtp = SmtpSettings(
        host=args.smtp_host,
        port=args.smtp_port,
        sender=args.smtp_from,
        starttls=args.smtp_starttls,
        user=args.smtp_user,
        password=_env("SMTP_PASSWORD"),
    )
    host = getattr(args, "host", "127.0.0.1")
    public = args.public_url or f"http://{host}:{port or getattr(args, 'port', 8080)}"
    return DeliverySettings(
        targets=Targets(timeout=args.notify_timeout, smtp=smtp),
        max_attempts=args.notify_attempts,
        backoff=args.notify_backoff,
        max_backoff=args.notify_max_backoff,
        public_url=public,
    )


def start_dispatcher(
    store: Store, args: argparse.Namespace, metrics: Metrics | None, port: int | None = None
) -> Dispatcher:
    return Dispatcher(store, delivery_settings(args, port), metrics=metrics).start()
