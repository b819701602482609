"""Real processes for the Celery tests: ``pipeline-core worker`` and ``scheduler``."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LoggedProcess as Process

#: Quick heartbeats and a short loss window, so a killed worker is noticed in seconds.
FAST = ("--heartbeat-interval", "0.3", "--worker-lost-after", "2")


def worker(tmp_path: Path, name: str, folder: Path, db: str, broker: str, *extra: str) -> Process:
    return Process(
        tmp_path / f"{name}.log",
        "worker", "--dags-folder", str(folder), "--db", db, "--broker", broker,
        "--concurrency", "2", *FAST, *extra,
    )  # fmt: skip


def scheduler(
    tmp_path: Path, name: str, folder: Path, db: str, broker: str, *extra: str
) -> Process:
    return Process(
        tmp_path / f"{name}.log",
        "scheduler", "--dags-folder", str(folder), "--db", db, "--broker", broker,
        "--executor", "celery", "--workers", "1", "--grace", "1", "--rescan-interval", "3600",
        "--worker-lost-after", "2", *extra,
    )  # fmt: skip
