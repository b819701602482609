"""Scale without a cost at rest: N generated DAG files (10 no-op tasks each, an hourly
schedule, nothing due) under one ``serve`` on SQLite.

Measured: start → healthy, start → every DAG listed, the CPU the whole process tree uses
while idle (utime + stime from /proc over ``--idle`` seconds, as a fraction of one core),
its RSS (after the first start and after a restart), and how long an edited file takes to
show in the API.
Run: python benchmarks/bench_scale.py [--dags 2000] [--idle 60] [--rescan-interval 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

TICKS = os.sysconf("SC_CLK_TCK")
DAG = """\
schedule: "0 * * * *"
start_date: "2030-01-01T00:00:00Z"  # nothing falls due while measured
catchup: false
tags: [generated]
tasks:
{tasks}
"""


def write_dags(folder: Path, count: int) -> None:
    tasks = "\n".join(
        f"  t{i}: {{type: noop{', depends_on: [t' + str(i - 1) + ']' if i else ''}}}"
        for i in range(10)
    )
    for index in range(count):
        (folder / f"dag_{index:05d}.yaml").write_text(DAG.format(tasks=tasks))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / TICKS


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def start(command: list[str], base: str, count: int, what: str) -> subprocess.Popen[bytes]:
    """Start ``serve``; print when it was healthy and when it listed every DAG."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    healthy = listed = None
    while listed is None and time.monotonic() - started < 600:
        try:
            if healthy is None and get(f"{base}/health")["data"]["status"] == "healthy":
                healthy = time.monotonic() - started
            if healthy is not None and get(f"{base}/dags?limit=1")["meta"]["total"] >= count:
                listed = time.monotonic() - started
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.05)
    print(f"{what}, {count:,} DAG files: healthy after {healthy:.2f} s, all listed after "
          f"{listed:.2f} s")  # fmt: skip
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--rescan-interval", default="30")
    parser.add_argument("--serve-arg", action="append", default=[])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        write_dags(folder, args.dags)
        port = free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        command = [sys.executable, "-m", "pipeline_core", "serve", "--port", str(port),
                   "--dags-folder", str(folder), "--db", f"sqlite:///{tmp}/scale.db",
                   "--rescan-interval", args.rescan_interval, *args.serve_arg]  # fmt: skip
        process = start(command, base, args.dags, "start")
        try:
            time.sleep(5)  # the start's own work settles
            pids = tree(process.pid)
            before, at = cpu_seconds(pids), time.monotonic()
            time.sleep(args.idle)
            pids = tree(process.pid)
            used = (cpu_seconds(pids) - before) / (time.monotonic() - at)
            print(f"idle CPU over {args.idle:.0f} s: {used * 100:.2f} % of one core; "
                  f"RSS {rss_mib(pids):.0f} MiB ({len(pids)} processes; serve's own "
                  f"{rss_mib([process.pid]):.0f} MiB)")  # fmt: skip
            edited = folder / "dag_00000.yaml"
            edited.write_text(edited.read_text().replace("tags: [generated]", "tags: [edited]"))
            at = time.monotonic()
            while "edited" not in get(f"{base}/dags/dag_00000")["data"]["tags"]:
                time.sleep(0.02)
                if time.monotonic() - at > 300:
                    break
            print(f"an edited file seen by the API after {time.monotonic() - at:.2f} s")
            process.terminate()
            process.wait(60)
            process = start(command, base, args.dags, "restart (every file unchanged)")
            time.sleep(5)
            print(f"after the restart: serve's RSS {rss_mib([process.pid]):.0f} MiB")
        finally:
            process.terminate()
            process.wait(60)


if __name__ == "__main__":
    main()
