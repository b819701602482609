"""Real processes for the Celery tests: ``pipeline-core worker`` and ``scheduler``."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import pipeline_core_process

#: Quick heartbeats and a short loss window, so a killed worker is noticed in seconds.
FAST = ("--heartbeat-interval", "0.3", "--worker-lost-after", "2")


class Process:
    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as output:
            self.process = pipeline_core_process(
                *args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def says(self, text: str) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return text in self.log.read_text()

    def kill(self) -> None:
        """``kill -9`` of the process and its worker pool."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


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
