"""Dashboard benchmark: page weight, time to first render and to live on a warm server, and
the page's CPU while 500 events a second arrive.

A `pipeline-core serve --no-scheduler` process with 50 DAGs (SQLite); Debian's Chromium,
headless, driven by Playwright from this process. Events are appended to the server's
database by this process (run state changes of the listed DAGs, 500 a second in batches of
50), which the server follows as it follows any other process's commits.
Run: python benchmarks/bench_ui.py [--loads 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from bench_api import free_port

from pipeline_core.store import open_store

CHROMIUM = "/usr/bin/chromium"
DAGS = 50


def page_weight() -> tuple[int, int, int]:
    root = resources.files("pipeline_core") / "ui" / "static"
    files = list(_walk(root))
    raw = sum(len(body) for body in files)
    packed = sum(len(gzip.compress(body, 9)) for body in files)
    return len(files), raw, packed


def _walk(root: resources.abc.Traversable) -> list[bytes]:
    found: list[bytes] = []
    for entry in root.iterdir():
        if entry.is_dir():
            found.extend(_walk(entry))
        else:
            found.append(entry.read_bytes())
    return found


def start(folder: Path, db: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "serve", "--no-scheduler", "--dags-folder",
         str(folder), "--db", db, "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import http.client

    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/v1/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.05)


def flood(db: str, rate: int, seconds: float, stop: threading.Event) -> int:
    """Append ``rate`` run events a second (batches of 50) for ``seconds``."""
    store = open_store(db)
    sent, started = 0, time.monotonic()
    try:
        while not stop.is_set() and time.monotonic() - started < seconds:
            for _ in range(50):
                dag = f"dag_{sent % DAGS:02d}"
                store.events.append_event(
                    "run.state_changed",
                    {"dag_id": dag, "run_id": f"flood_{sent}", "previous_state": "running",
                     "new_state": "success", "timestamp": "2026-01-01T00:00:00.000000Z"},
                    dag_id=dag, run_id=f"flood_{sent}",
                )  # fmt: skip
                sent += 1
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    finally:
        store.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"machine: {machine()}")
    count, raw, packed = page_weight()
    print(f"page weight: {count} files, {raw / 1024:.1f} KiB, gzip {packed / 1024:.1f} KiB")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        for i in range(DAGS):
            (folder / f"dag_{i:02d}.yaml").write_text(
                f"tags: [group{i % 5}]\ntasks:\n  a: {{type: noop}}\n  b: {{type: noop, depends_on: [a]}}\n"
            )
        db = f"sqlite:///{Path(tmp) / 'ui.db'}"
        port = free_port()
        server = start(folder, db, port)
        url = f"http://127.0.0.1:{port}/ui/"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                rendered, live = [], []
                for _ in range(args.loads + 1):  # the first load warms the server
                    context = browser.new_context()
                    page = context.new_page()
                    page.goto(url)
                    page.locator("#live[data-state=live]").wait_for()
                    page.locator("main[data-ready]").wait_for()
                    marks = page.evaluate(
                        "['rendered', 'live'].map((m) => performance"
                        ".getEntriesByName('pipeline-core:' + m)[0].startTime)"
                    )  # milliseconds from the start of the navigation
                    rendered.append(marks[0] / 1000)
                    live.append(marks[1] / 1000)
                    context.close()
                print(
                    f"from navigation start: the DAGs view complete (every DAG's last runs) median {statistics.median(rendered[1:]) * 1000:.0f} ms; "
                    f"live (stream open) median {statistics.median(live[1:]) * 1000:.0f} ms "
                    f"({args.loads} loads)"
                )
                page = browser.new_page()
                page.goto(url)
                page.locator("#live[data-state=live]").wait_for()
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.evaluate(
                    "window.__gaps = []; let last = performance.now();"
                    "(function tick(now) { window.__gaps.push(now - last); last = now;"
                    " requestAnimationFrame(tick); })(last);"
                )
                before = {
                    m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                }
                stop = threading.Event()
                started = time.perf_counter()
                sent = flood(db, 500, args.seconds, stop)
                elapsed = time.perf_counter() - started
                time.sleep(1)  # the last batches reach the page
                after = {
                    m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]
                }
                gaps = page.evaluate("window.__gaps.slice(5)")
                busy = after["TaskDuration"] - before["TaskDuration"]
                script = after["ScriptDuration"] - before["ScriptDuration"]
                print(
                    f"flood: {sent} events in {elapsed:.1f} s ({sent / elapsed:.0f}/s): page main thread "
                    f"busy {busy / (elapsed + 1) * 100:.0f} % (script {script / (elapsed + 1) * 100:.0f} %), "
                    f"frames: median gap {statistics.median(gaps):.1f} ms, longest {max(gaps):.0f} ms"
                )
                browser.close()
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
