"""Live events benchmark: 500 concurrent subscribers on one `pipeline-core serve` process while
a 1,000-task run executes. Reports events delivered per second, commit-to-delivery latency,
events lost, the run's time with and without the subscribers, and the server's RSS.
Run: python benchmarks/bench_sse.py [--subscribers 500] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile
from bench_api import free_port, rss_kib, start_serve


def api(port: int, method: str, path: str, body: dict | None = None) -> dict:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(
        method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers
    )
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data  # type: ignore[no-any-return]


def run_and_time(port: int, run_id: str) -> float:
    api(port, "POST", "/api/v1/dags/fan/runs", {"run_id": run_id})
    while True:
        run = api(port, "GET", f"/api/v1/dags/fan/runs/{run_id}")["data"]
        if run["state"] in ("success", "failed"):
            assert run["state"] == "success"
            return float(run["duration_ms"])
        time.sleep(0.05)


class Subscribers:
    """Many SSE connections read by one selector loop. Every subscriber's messages are
    counted; one in ``sample`` also has each event's arrival time recorded (parsing all of
    them would make this client, not the server, the bottleneck)."""

    def __init__(self, port: int, count: int, sample: int = 10) -> None:
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.counts: dict[socket.socket, int] = {}
        self.sampled: dict[socket.socket, list[tuple[int, float, float]]] = {}
        request = b"GET /api/v1/events?run_id=watched HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.buffers[sock] = b""
            self.counts[sock] = 0
            if index % sample == 0:
                self.sampled[sock] = []

    def pump(self, until: float, expected: int) -> None:
        """Read until every subscriber has ``expected`` events (or time runs out)."""
        while time.monotonic() < until and min(self.counts.values()) < expected:
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(1 << 18)
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                now = time.time()
                data = self.buffers[sock] + chunk
                cut = data.rfind(b"\n\n") + 2
                complete, self.buffers[sock] = data[:cut], data[cut:]
                self.counts[sock] += complete.count(b"\nevent: ")
                if sock in self.sampled:
                    for message in complete.split(b"\n\n"):
                        start = message.find(b"\ndata: ")
                        if start >= 0:
                            event = json.loads(message[start + 7 :])
                            committed = datetime.fromisoformat(event["timestamp"]).timestamp()
                            self.sampled[sock].append((event["seq"], now, committed))

    def close(self) -> None:
        for sock in self.counts:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "dags").mkdir()
        tasks = "".join(f"  t{i}: {{type: noop, depends_on: [start]}}\n" for i in range(args.tasks))
        (folder / "dags" / "fan.yaml").write_text(
            f"concurrency: 128\nmax_active_runs: 10\ntasks:\n  start: {{type: noop}}\n{tasks}"
            f"  end: {{type: noop, depends_on: [{', '.join(f't{i}' for i in range(args.tasks))}]}}\n"
        )
        port = free_port()
        server, _ = start_serve(f"sqlite:///{folder / 'sse.db'}", folder, port)
        try:
            api(port, "PATCH", "/api/v1/pools/default_pool", {"slots": 128})
            run_and_time(port, "warm-up")
            alone = statistics.median(run_and_time(port, f"alone-{i}") for i in range(3))
            subscribers = Subscribers(port, args.subscribers)
            time.sleep(1.0)
            rss = rss_kib(server.pid)
            expected = 3 + 2 * (args.tasks + 2)
            reader = threading.Thread(
                target=subscribers.pump, args=(time.monotonic() + 120, expected)
            )
            reader.start()
            started = time.time()
            duration = run_and_time(port, "watched")
            reader.join()
            watched = api(port, "GET", "/api/v1/dags/fan/runs/watched")["data"]
            arrivals = [arrived for got in subscribers.sampled.values() for _, arrived, _ in got]
            elapsed = max(arrivals) - started
            counts = list(subscribers.counts.values())
            latencies = [
                (arrived - committed) * 1000
                for got in subscribers.sampled.values()
                for _, arrived, committed in got
            ]
            delivered = sum(counts)
            lost = sum(max(0, expected - c) for c in counts)
            print(f"run of {args.tasks + 2} no-op tasks alone: {alone:.0f} ms (median of 3)")
            print(
                f"the same with {args.subscribers} subscribers: {duration:.0f} ms ({(duration / alone - 1) * 100:+.1f} %)"
            )
            print(
                f"events per subscriber expected {expected}; delivered {delivered:,} in total, lost {lost}"
            )
            print(f"delivery rate: {delivered / elapsed:,.0f} events/s across all subscribers")
            print(
                f"commit → delivery latency: p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms"
            )
            print(
                f"server RSS with {args.subscribers} subscribers: {rss / 1024:.1f} MiB (peak after the run {rss_kib(server.pid) / 1024:.1f} MiB)"
            )
            assert watched["state"] == "success"
            subscribers.close()
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
