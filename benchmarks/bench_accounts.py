"""Token check benchmark: what asking for a token costs a request. Two `pipeline-core serve`
processes with the same 100 DAGs — one open, one with `--auth-token` and named tokens — are
driven by one keep-alive HTTP client each in turn (3 repetitions, alternating), with
`GET /api/v1/dags` (the check alone: the answer comes from memory) and
`PATCH /api/v1/dags/{id}` (the check, the write, and on the server with tokens an audit row).
Run: python benchmarks/bench_accounts.py [--seconds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.store import open_store

LEGACY = "legacy-benchmark-token"


def serve(folder: Path, db: str, log: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "serve", "--dags-folder", str(folder),
         "--db", db, "--port", "0", "--workers", "1", "--rescan-interval", "3600", *extra],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "API on http://" in line:
                return process, int(line.rsplit(":", 1)[1].split("/")[0])
        time.sleep(0.1)
    raise RuntimeError(log.read_text())


def drive(port: int, token: str | None, method: str, seconds: float) -> list[float]:
    """Seconds each request took, one keep-alive client, for ``seconds``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    took: list[float] = []
    end = time.perf_counter() + seconds
    paused = False
    while time.perf_counter() < end:
        if method == "GET":
            path, body = "/api/v1/dags?limit=20", None
        else:
            paused = not paused
            path, body = "/api/v1/dags/dag_007", json.dumps({"is_paused": paused})
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        took.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    conn.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        for i in range(100):
            (folder / f"dag_{i:03}.yaml").write_text(f"tags: [t{i % 5}]\ntasks:\n  a: {{}}\n")
        secured_db = f"sqlite:///{tmp}/secured.db"
        store = open_store(secured_db)
        named = store.accounts.create_token("bench", "admin")[1]
        store.close()
        servers = {
            "open": serve(folder, f"sqlite:///{tmp}/open.db", Path(tmp) / "open.log"),
            "secured": serve(folder, secured_db, Path(tmp) / "secured.log", "--auth-token", LEGACY),
        }
        cases = {"no token (open server)": ("open", None), "--auth-token": ("secured", LEGACY),
                 "named token": ("secured", named)}  # fmt: skip
        found: dict[str, dict[str, list[float]]] = {
            m: {c: [] for c in cases} for m in ("GET", "PATCH")
        }
        try:
            for method, by_case in found.items():
                for rep in range(args.repeat):
                    order = list(cases) if rep % 2 == 0 else list(reversed(cases))
                    for case in order:
                        server, token = cases[case]
                        port = servers[server][1]
                        drive(port, token, method, 0.3)  # warm
                        by_case[case] += drive(port, token, method, args.seconds)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)
    result: dict[str, Any] = {"machine": machine()}
    for method, by_case in found.items():
        result[method] = {
            case: {"median_us": round(statistics.median(t) * 1e6, 1),
                   "p99_us": round(percentile(t, 99) * 1e6, 1), "requests": len(t)}
            for case, t in by_case.items()
        }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
