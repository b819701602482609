"""A connection flood against ``pipeline-core serve`` limited to 1,024 descriptors: more idle
connections than it may open cost it neither its health endpoint nor its scheduler."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.api.conftest import api_port
from tests.conftest import pipeline_core_process, poll_until

pytestmark = pytest.mark.slow
FLOOD = 1100


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    "cap",
    [[], ["--max-connections", "5000"]],
    ids=["default-cap", "cap-over-the-descriptor-limit"],
)
def test_1100_idle_connections_do_not_starve_a_1024_descriptor_server(tmp_path, cap):
    """With the default cap the longest-idle connections make room; with a cap above the
    descriptor limit the server runs out (EMFILE), frees idle ones and pauses accepting
    instead of spinning."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 200:
        pytest.fail(f"this test needs {FLOOD + 200} descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "tick.yaml").write_text("dag_id: tick\ntasks:\n  a: {type: noop}\n")
    server = pipeline_core_process(
        "serve", "--dags-folder", str(folder), "--db", f"sqlite:///{tmp_path / 'f.db'}",
        "--port", "0", "--event-streams", "thread", "--rescan-interval", "1", *cap,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_limit_descriptors,
    )  # fmt: skip
    flood: list[socket.socket] = []
    try:
        port = api_port(server)
        deadline = time.monotonic() + 30
        while len(flood) < FLOOD and time.monotonic() < deadline:
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert len(flood) == FLOOD
        cpu_before = _cpu_seconds(server.pid)
        time.sleep(2.0)  # (measuring: the flood holds, the server must stay quiet)
        assert _cpu_seconds(server.pid) - cpu_before < 0.5  # no busy accept loop
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
            health = json.loads(r.read())["data"]
        assert time.monotonic() - started < 1.0
        assert health["status"] == "healthy", health
        (folder / "tock.yaml").write_text("dag_id: tock\ntasks:\n  a: {type: noop}\n")
        tock = f"http://127.0.0.1:{port}/api/v1/dags/tock"
        poll_until(lambda: _found(tock), timeout=10)  # the scheduler's folder scan still works
        assert _threads(server.pid) < 60  # idle connections cost no thread
    finally:
        for conn in flood:
            conn.close()
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Traceback" not in output, output[-3000:]


def _found(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
