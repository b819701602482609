"""API benchmark: a `pipeline-core serve` process with 100 DAGs and 10,000 runs stored,
driven by keep-alive HTTP clients (1 and 8 at once) from this process.

Also measured in the same run: time from process start to a healthy /health, the server's
RSS idle and under load, the ceiling of the design — a bare `http.server` handler
returning the same bytes as GET /api/v1/dags —, and trigger-and-wait latency (run end →
client) for /wait, SSE and the CLI (benchmarks/_trigger_wait.py).
Run: python benchmarks/bench_api.py [--seconds 5] [--waits 100] [--only-waits]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile
from _trigger_wait import report

from pipeline_core.model import DagRun, TaskSpec
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.state import RunState
from pipeline_core.store import open_store

BASE = datetime(2026, 1, 1, tzinfo=UTC)

BARE_SERVER = """
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = open(sys.argv[1], "rb").read()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # the same two fixes as the real server: buffered writes, no Nagle delay
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *args): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def populate(folder: Path, db: str) -> None:
    dags = folder / "dags"
    dags.mkdir()
    for i in range(100):
        tasks = "\n".join(
            f"  t{j}: {{type: noop{', depends_on: [t0]' if j else ''}}}"
            for j in range(100 if i == 0 else 3)
        )
        (dags / f"dag_{i:03d}.yaml").write_text(f"tags: [bench, group{i % 5}]\ntasks:\n{tasks}\n")
    (dags / "quick.yaml").write_text("max_active_runs: 100000\ntasks:\n  only: {type: noop}\n")
    store = open_store(db)
    DagSync(store, dags).refresh()
    for i in range(100):
        dag_id = f"dag_{i:03d}"
        n_tasks = 100 if i == 0 else 3
        for r in range(100):
            run = DagRun(
                dag_id, f"r{r:03d}", RunState.QUEUED, "scheduled", BASE + timedelta(hours=r)
            )
            store.runs.create_run(run, [TaskSpec(f"t{j}") for j in range(n_tasks)])
            store.runs.transition_run(dag_id, run.run_id, RunState.QUEUED, RunState.RUNNING)
            store.runs.transition_run(dag_id, run.run_id, RunState.RUNNING, RunState.SUCCESS)
    store.close()


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its child processes."""
    total = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += rss_kib(int(child))
    return total


def in_threads(worker: Callable[[int], None], count: int) -> float:
    """Run ``worker(i)`` on ``count`` threads at once; the seconds until all have ended."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def load(
    port: int,
    method: str,
    path: str,
    clients: int,
    seconds: float,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency (ms) with ``clients`` keep-alive connections."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}
    headers.update(extra or {})

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = latencies[index]
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - start) * 1000)
            assert response.status < 400, (path, response.status)
            assert not extra or response.status == 304, "expected a 304"
        conn.close()

    elapsed = in_threads(worker, clients)
    merged = [x for part in latencies for x in part]
    return len(merged) / elapsed, statistics.median(merged), percentile(merged, 99)


def start_serve(
    db: str, folder: Path, port: int, *extra: str, source: str | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """``serve`` from this checkout, or from the ``src`` folder ``source`` (older code)."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": source} if source else None
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "serve", "--no-scheduler", "--dags-folder", str(folder / "dags"),
         "--db", db, "--port", str(port), "--log-level", "warning", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/api/v1/health")
            response = conn.getresponse()
            data = json.loads(response.read())
            conn.close()
            if response.status == 200 and data["data"]["status"] in ("healthy", "degraded"):
                return process, time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)


CASES = [
    ("GET /api/v1/dags", "GET", "/api/v1/dags", None),
    ("GET one run with 100 task instances", "GET", "/api/v1/dags/dag_000/runs/r050", None),
    ("GET task list, finished 100-task run", "GET", "/api/v1/dags/dag_000/runs/r050/tasks", None),
    ("GET runs page of 100", "GET", "/api/v1/dags/dag_001/runs?limit=100", None),
    ("POST trigger", "POST", "/api/v1/dags/quick/runs", b"{}"),
]


def idle_connections_rss(port: int, pid: int, count: int) -> tuple[int, float]:
    """Open ``count`` idle connections (each having sent one request); the server's RSS
    with them open (KiB) and the seconds it took."""
    held: list[socket.socket] = []
    started = time.perf_counter()
    request = b"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=30)
            conn.sendall(request)
            held.append(conn)
        for conn in held:
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
        return rss_kib(pid), elapsed
    finally:
        for conn in held:
            conn.close()


def accept_rate(port: int, seconds: float, clients: int = 8) -> float:
    """New connections per second, each one request and closed."""
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/v1/version", headers={"Connection": "close"})
            conn.getresponse().read()
            conn.close()
            counts[index] += 1

    elapsed = in_threads(worker, clients)  # (before the sum: it reads what the workers counted)
    return sum(counts) / elapsed


def measure(
    label: str, db: str, folder: Path, seconds: float, idle: int, source: str | None
) -> bytes:
    """Every figure for one server; returns the GET /dags body (for the bare server)."""
    port = free_port()
    server, ready_s = start_serve(db, folder, port, source=source)
    try:
        print(f"[{label}] process start → healthy /health: {ready_s * 1000:.0f} ms")
        time.sleep(0.5)
        print(f"[{label}] server RSS idle: {rss_kib(server.pid) / 1024:.1f} MiB")
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/api/v1/dags")
        dags_body = conn.getresponse().read()
        conn.close()
        peak_rss = 0
        for name, method, path, body in CASES:
            for clients in (1, 8):
                rate, p50, p99 = load(port, method, path, clients, seconds, body)
                peak_rss = max(peak_rss, rss_kib(server.pid))
                print(f"[{label}] {name:<38} {clients:>7} {rate:>8,.0f} {p50:>8.2f} {p99:>8.2f}")
        tasks = "/api/v1/dags/dag_000/runs/r050/tasks"
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", tasks)
        etag = conn.getresponse().getheader("ETag")
        conn.close()
        if etag:  # older code sends none
            for clients in (1, 8):
                rate, p50, p99 = load(
                    port, "GET", tasks, clients, seconds, None, {"If-None-Match": etag}
                )
                print(
                    f"[{label}] {'304 for the task list (If-None-Match)':<38} {clients:>7} {rate:>8,.0f} {p50:>8.2f} {p99:>8.2f}"
                )
        print(f"[{label}] server RSS under load (peak seen): {peak_rss / 1024:.1f} MiB")
        print(
            f"[{label}] new connections per second (8 clients): {accept_rate(port, seconds):,.0f}"
        )
        if idle:
            rss, took = idle_connections_rss(port, server.pid, idle)
            print(
                f"[{label}] RSS with {idle:,} idle connections: {rss / 1024:.1f} MiB (opened in {took:.1f} s)"
            )
    finally:
        server.terminate()
        server.wait(30)
    return dags_body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    parser.add_argument("--old", help="the src folder of older code to measure in the same run")
    parser.add_argument("--waits", type=int, default=100, help="runs per trigger-and-wait way")
    parser.add_argument("--only-waits", action="store_true", help="measure trigger-and-wait only")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle * 2 + 1000)), hard))
    print(f"machine: {machine()}")
    print(f"{'[server] request':<47} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = f"sqlite:///{folder / 'api.db'}"
        populate(folder, db)
        if args.waits:
            port = free_port()
            server, _ = start_serve(db, folder, port)
            try:
                report(f"http://127.0.0.1:{port}", "quick", args.waits)
            finally:
                server.terminate()
                server.wait(30)
            if args.only_waits:
                return
        if args.old:
            measure("old", db, folder, args.seconds, args.idle, args.old)
        dags_body = measure("new", db, folder, args.seconds, args.idle, None)
        body_file = folder / "dags.json"
        body_file.write_bytes(dags_body)
        bare_port = free_port()
        bare = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(BARE_SERVER), str(body_file), str(bare_port)],
            stdout=subprocess.PIPE,
        )
        try:
            assert bare.stdout is not None and bare.stdout.readline().strip() == b"ready"
            for clients in (1, 8):
                rate, p50, p99 = load(bare_port, "GET", "/", clients, args.seconds)
                print(
                    f"[bare] {'http.server, same bytes as /dags':<38} {clients:>7} {rate:>8,.0f} {p50:>8.2f} {p99:>8.2f}"
                )
        finally:
            bare.terminate()
            bare.wait(30)
            if bare.stdout:
                bare.stdout.close()
    print(f"(pid {os.getpid()} drove the load; every server ran as a separate process)")


if __name__ == "__main__":
    main()
