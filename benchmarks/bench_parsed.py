"""Parsed DAG files kept across restarts: N generated YAML files (as bench_scale.py writes
them) loaded by the scheduler's folder sync into a SQLite store, in the scheduler's steps —
the first time (every file parsed, the cache written), then as a restart does with the cache
and without it (the store already holds every DAG). Prints the median of R runs of each.
Run: python benchmarks/bench_parsed.py [--dags 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from bench_scale import write_dags

from pipeline_core.scheduler.scheduler import FIRST_STEP, LOAD_STEP
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store


def load(folder: Path, db: Path, cache: Path | None) -> float:
    """Seconds until every file is loaded, in the scheduler's steps."""
    store = open_store(f"sqlite:///{db}")
    try:
        started = time.perf_counter()
        sync = DagSync(store, folder, parsed_cache=cache)
        dags = sync.refresh(budget=FIRST_STEP)
        while sync.loading:
            dags = sync.refresh(budget=LOAD_STEP)
        took = time.perf_counter() - started
    finally:
        store.close()
    assert dags, "nothing loaded"
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        write_dags(folder, args.dags)
        first, cached, uncached = [], [], []
        for _ in range(args.repeat):
            db, cache = Path(tmp) / "s.db", Path(tmp) / "cache" / "dags.pickle"
            first.append(load(folder, db, cache))
            cached.append(load(folder, db, cache))
            uncached.append(load(folder, db, None))
            db.unlink()
            shutil.rmtree(cache.parent)
        size = sum(1 for _ in folder.iterdir())
        print(f"{size:,} YAML files, median of {args.repeat}")
        for name, samples in (("first load (parse, write the cache)", first),
                              ("restart, with the cache", cached),
                              ("restart, without it (every file parsed)", uncached)):  # fmt: skip
            print(f"{name:42s} {statistics.median(samples):6.2f} s")


if __name__ == "__main__":
    main()
