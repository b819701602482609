"""Secret masking benchmark: a task that writes 100 MB of log lines, with no secret known and
with 50 secrets registered (stored secret variables), in one run; the two alternate between
repetitions so machine noise spreads evenly. Also the masker alone, on 64 KiB log chunks.
Run: python benchmarks/bench_secrets.py [--megabytes 100] [--repeat 3] [--mode worker]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from pipeline_core.credentials.cipher import Cipher
from pipeline_core.credentials.masking import Masker
from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, RunState
from pipeline_core.store import open_store

SECRETS = 50


def run_once(folder: str, name: str, megabytes: int, mode: str, known: int) -> float:
    """Seconds from trigger to the end of one run of the log-writing task."""
    store = open_store(f"sqlite:///{folder}/{name}.db")
    store.credentials.cipher = Cipher([Cipher.new_key()])
    for index in range(known):
        store.credentials.set_variable(f"api_token_{index}", secrets.token_urlsafe(18))
    task = Task("write", "python", config={"callable": "workloads:write_log",
                                            "kwargs": {"megabytes": megabytes}})  # fmt: skip
    dag = DAG("logs", (task,))
    done = threading.Event()
    store.add_listener(lambda events: done.set())
    engine = Engine(store, {"logs": dag}, settings=EngineSettings(default_executor=mode)).start()
    try:
        started = time.perf_counter()
        run = engine.trigger(TriggerRequest("logs"))
        while store.runs.get_run("logs", run.run_id).state not in FINISHED_RUN_STATES:
            done.wait(1)
            done.clear()
        elapsed = time.perf_counter() - started
        assert store.runs.get_run("logs", run.run_id).state is RunState.SUCCESS
        return elapsed
    finally:
        engine.stop(grace=0)
        store.close()


def masker_throughput(known: int) -> float:
    """MB/s of ``Masker.mask`` over 64 KiB chunks of log text that hold no secret."""
    masker = Masker(secrets.token_urlsafe(18) for _ in range(known))
    line = "[2026-12-07T12:00:00.000000Z] INFO worker processed batch with ordinary text ok\n"
    chunk = line * (64 * 1024 // len(line))
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        masker.mask(chunk)
    return len(chunk) * rounds / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="worker", choices=("thread", "worker"))
    args = parser.parse_args()
    times: dict[int, list[float]] = {0: [], SECRETS: []}
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(args.repeat):
            for known in (0, SECRETS) if rep % 2 == 0 else (SECRETS, 0):
                name = f"r{rep}-{known}"
                times[known].append(run_once(folder, name, args.megabytes, args.mode, known))
    plain, masked = statistics.median(times[0]), statistics.median(times[SECRETS])
    result: dict[str, Any] = {
        "machine": machine(),
        "mode": args.mode,
        "megabytes": args.megabytes,
        "no_secrets_s": round(plain, 3),
        f"{SECRETS}_secrets_s": round(masked, 3),
        "overhead_pct": round((masked / plain - 1) * 100, 1),
        "runs": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
        "masker_mb_per_s": round(masker_throughput(SECRETS), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
