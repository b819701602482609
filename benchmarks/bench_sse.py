"""Live events benchmark: 500 concurrent subscribers on one `pipeline-core serve` while
1,000-task runs execute, with the streams written from a process of their own (the default)
and from a thread of the engine's process. Reports events delivered per second,
commit-to-delivery latency, events lost, the run's time with and without the subscribers,
and the server's RSS (its processes together).
Run: python benchmarks/bench_sse.py [--subscribers 500] [--tasks 1000] [--modes process,thread]
     [--pin]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
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

RUNS = 5


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
    """Many identical SSE streams read by one selector loop. A few reference streams are
    parsed in full (every event's id and arrival time); the others are checked byte for byte
    against them by length — the streams are identical, so a stream with as many bytes as a
    complete reference lost nothing. Parsing all 500 in Python would make this client, not
    the server, the bottleneck."""

    def __init__(self, port: int, count: int, references: int = 5) -> None:
        self.selector = selectors.DefaultSelector()
        self.received: dict[socket.socket, int] = {}
        self.partial: dict[socket.socket, bytes] = {}
        self.events: dict[socket.socket, list[tuple[int, float, float]]] = {}
        head = b" /api/v1/events?dag_id=fan HTTP/1.%d\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        #: HTTP/1.0 streams are close-delimited, so they all carry the same bytes and are
        #: counted, not parsed; one reference stream in two speaks HTTP/1.1 (chunked).
        self.plain: set[socket.socket] = set()
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            reference = index % (count // references or 1) == 0
            chunked = reference and (index // (count // references or 1)) % 2 == 1
            sock.sendall(b"GET" + head % (1 if chunked else 0))
            if not chunked:
                self.plain.add(sock)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.received[sock] = 0
            if reference:
                self.events[sock] = []
                self.partial[sock] = b""

    def pump(self, until: float, expected_events: int) -> None:
        """Read until every reference stream has ``expected_events`` and every other stream
        as many bytes (or time runs out)."""
        scratch = memoryview(bytearray(1 << 18))
        while time.monotonic() < until and not self.complete(expected_events):
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock not in self.events:
                    received = sock.recv_into(scratch)
                    self.received[sock] += received
                    if not received:
                        self.selector.unregister(sock)
                    continue
                chunk = sock.recv(1 << 18)
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                now = time.time()
                self.received[sock] += len(chunk)
                data = self.partial[sock] + chunk
                cut = data.rfind(b"\n\n") + 2
                complete, self.partial[sock] = data[:cut], data[cut:]
                for message in complete.split(b"\n\n"):
                    start = message.find(b"\ndata: ")
                    if start >= 0:
                        event = json.loads(message[start + 7 :])
                        committed = datetime.fromisoformat(event["timestamp"]).timestamp()
                        self.events[sock].append((event["seq"], now, committed))

    def reference_bytes(self) -> int:
        return max(self.received[sock] for sock in self.events if sock in self.plain)

    def complete(self, expected_events: int) -> bool:
        if any(len(got) < expected_events for got in self.events.values()):
            return False
        return min(self.received[sock] for sock in self.plain) >= self.reference_bytes()

    def close(self) -> None:
        for sock in self.received:
            sock.close()


def cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of ``pid`` and of each of its child processes."""
    found = {}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        found[each] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` on one CPU."""
    for thread in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(thread.name), {cpu})


def measure(
    folder: Path, mode: str, subscriber_count: int, tasks: int, pinned: bool, source: str | None
) -> None:
    """One server writing its streams from ``mode`` (``process`` or ``thread``). ``pinned``:
    the engine's process gets CPU 0 to itself; the stream process and the clients share
    CPU 1 — as if the clients ran on other hosts and the stream process had a core."""
    port = free_port()
    code = "old" if source else "new"
    server, _ = start_serve(
        f"sqlite:///{folder / f'sse-{mode}-{code}.db'}", folder, port, "--event-streams", mode,
        "--sse-keepalive", "3600", source=source,
    )  # fmt: skip
    if pinned:
        pin(server.pid, 0)
        for child in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split():
            pin(int(child), 1)
        os.sched_setaffinity(0, {1})
    try:
        api(port, "PATCH", "/api/v1/pools/default_pool", {"slots": 128})
        run_and_time(port, "warm-up")
        cpu = cpu_seconds(server.pid)
        alone = [run_and_time(port, f"alone-{i}") for i in range(RUNS)]
        cpu_alone = cpu_seconds(server.pid)[server.pid] - cpu[server.pid]
        subscribers = Subscribers(port, subscriber_count)
        time.sleep(1.0)
        rss = rss_kib(server.pid)
        per_run = 3 + 2 * (tasks + 2)
        watched, busy = [], 0.0
        cpu, client = cpu_seconds(server.pid), resource.getrusage(resource.RUSAGE_SELF)
        for i in range(RUNS):  # one run at a time, each delivered in full before the next
            reader = threading.Thread(
                target=subscribers.pump, args=(time.monotonic() + 120, (i + 1) * per_run)
            )
            reader.start()
            started = time.time()
            watched.append(run_and_time(port, f"watched-{i}"))
            reader.join()
            busy += max(a for got in subscribers.events.values() for _, a, _ in got) - started
        cpu_watched = {
            pid: seconds - cpu.get(pid, 0.0) for pid, seconds in cpu_seconds(server.pid).items()
        }
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_client = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
        peak = rss_kib(server.pid)
        stored = [e["seq"] for r in range(RUNS) for e in run_events(port, f"watched-{r}")]
        reference = subscribers.reference_bytes()
        complete = sum(
            (received == reference or sock not in subscribers.plain)
            and [seq for seq, _, _ in subscribers.events.get(sock, [])] in ([], stored)
            for sock, received in subscribers.received.items()
        )
        subscribers.close()
        alone += [run_and_time(port, f"alone-after-{i}") for i in range(RUNS)]
        latencies = [
            (arrived - committed) * 1000
            for got in subscribers.events.values()
            for _, arrived, committed in got
        ]
        delivered = subscriber_count * len(stored)
        baseline, duration = statistics.median(alone), statistics.median(watched)
        code = "older code" if source else "this code"
        print(f"[{code}: streams written from a {mode}{', pinned' if pinned else ''}]")
        print(f"  run of {tasks + 2} no-op tasks alone: {baseline:.0f} ms (median of {len(alone)})")
        print(
            f"  the same with {subscriber_count} subscribers: {duration:.0f} ms, median of {RUNS}"
            f" ({(duration / baseline - 1) * 100:+.1f} %)"
        )
        print(
            f"  events per subscriber {len(stored)} ({RUNS} runs); streams with every event:"
            f" {complete}/{subscriber_count}"
        )
        streams_cpu = sum(v for pid, v in cpu_watched.items() if pid != server.pid)
        print(
            f"  CPU per run: engine's process {cpu_alone / RUNS * 1000:.0f} ms alone,"
            f" {cpu_watched[server.pid] / RUNS * 1000:.0f} ms with the subscribers;"
            f" stream process {streams_cpu / RUNS * 1000:.0f} ms;"
            f" the 500 clients {cpu_client / RUNS * 1000:.0f} ms"
        )
        print(f"  delivery rate: {delivered / busy:,.0f} events/s across all subscribers")
        print(
            f"  commit → delivery latency: p50 {statistics.median(latencies):.1f} ms,"
            f" p99 {percentile(latencies, 99):.1f} ms"
        )
        print(
            f"  server RSS with {subscriber_count} subscribers: {rss / 1024:.1f} MiB"
            f" (after the runs {peak / 1024:.1f} MiB)"
        )
    finally:
        server.terminate()
        server.wait(30)


def run_events(port: int, run_id: str) -> list[dict]:  # type: ignore[type-arg]
    """A run's events as the server stores them (the timeline endpoint's source)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/api/v1/events?run_id={run_id}&last_event_id=0")
    response = conn.getresponse()
    events: list[dict] = []  # type: ignore[type-arg]
    want = None
    while want is None or len(events) < want:
        line = response.fp.readline()
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            events.append(event)
            if event["type"] == "run.state_changed" and event["new_state"] == "success":
                want = len(events)
    conn.close()
    return events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--modes", default="process,thread")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="engine's process alone on CPU 0; stream process and clients on CPU 1",
    )
    parser.add_argument("--old", help="the src folder of older code to measure in the same run")
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
        for mode in args.modes.split(","):
            for source in ([args.old] if args.old else []) + [None]:
                measure(folder, mode, args.subscribers, args.tasks, args.pin, source)


if __name__ == "__main__":
    main()
