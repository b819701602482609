"""The remote CLI against a real ``serve`` process: exit codes, live progress, a wait that
spans a server restart, and every command with its errors."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LoggedProcess, poll_until

ROOT = Path(__file__).parents[1]
DAGS = {
    "ok.yaml": """
        tasks:
          a: {type: noop}
          b: {type: shell, command: "echo hello from b", depends_on: [a]}
        """,
    "fails.yaml": """
        tasks:
          boom: {type: shell, command: "echo going down; exit 3"}
        """,
    "slow.yaml": """
        tasks:
          sleepy: {type: shell, command: "sleep 60"}
        """,
    "steps.yaml": """
        tasks:
          first: {type: shell, command: "sleep 2", retries: 2, retry_delay: 0}
          second: {type: noop, depends_on: [first]}
        """,
    "hourly.yaml": """
        schedule: "0 * * * *"
        start_date: 2026-01-01
        tasks:
          nap: {type: shell, command: "sleep 0.3"}
        """,
    "berlin.yaml": """
        schedule: "30 2 * * *"
        timezone: Europe/Berlin
        start_date: 2026-01-01
        tasks:
          t: {type: noop}
        """,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``pipeline-core serve`` on a fixed port (so it can be restarted on the same one)."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp, self.extra = tmp, extra
        self.folder = tmp / "dags"
        if not self.folder.exists():
            self.folder.mkdir()
            for name, text in DAGS.items():
                (self.folder / name).write_text(textwrap.dedent(text))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.process: LoggedProcess | None = None

    def start(self) -> Server:
        self.starts += 1
        self.process = LoggedProcess(
            self.tmp / f"serve-{self.starts}.log",
            "serve", "--port", str(self.port), "--dags-folder", str(self.folder),
            "--db", f"sqlite:///{self.tmp / 'cli.db'}", "--grace", "0", "--workers", "2",
            "--rescan-interval", "3600", *self.extra,
        )  # fmt: skip
        poll_until(lambda: self.process is not None and self.process.says("API on"), timeout=60)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("remote-cli")).start()
    yield started
    started.stop()


def cli(
    server: Server | str | None, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    url = server.url if isinstance(server, Server) else server
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PIPELINE_CORE_SERVER", None)
    if url is not None:
        env["PIPELINE_CORE_SERVER"] = url
    return subprocess.run(
        [sys.executable, "-m", "pipeline_core", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def test_trigger_and_wait_exits_0_on_success_with_a_line_per_task_change(server: Server) -> None:
    done = cli(server, "runs", "trigger", "ok", "--run-id", "w0", "--wait")
    assert done.returncode == 0, done.stderr
    assert "run w0 of ok triggered" in done.stderr
    assert "a  queued → running" in done.stdout and "b  running → success" in done.stdout
    assert "run w0 of ok: success" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_failed_run_exits_1(server: Server) -> None:
    failed = cli(server, "runs", "trigger", "fails", "--wait")
    assert failed.returncode == 1, failed.stderr
    assert "boom  running → failed" in failed.stdout and "exit" in failed.stdout


def test_a_wait_that_times_out_exits_2_and_a_cancelled_run_too(server: Server) -> None:
    late = cli(server, "runs", "trigger", "slow", "--run-id", "late", "--wait", "--timeout", "1")
    assert late.returncode == 2, late.stderr
    assert "timed out after 1s; run late is still" in late.stderr
    watcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "runs", "watch", "slow", "late",
         "--server", server.url, "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, cwd=ROOT,
    )  # fmt: skip
    assert watcher.stderr is not None
    first = watcher.stderr.readline()  # the watcher follows the run: it replayed its start
    assert "sleepy  queued → running" in first, first
    assert cli(server, "runs", "cancel", "slow", "late").returncode == 0
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 2, err
    assert json.loads(out)["state"] == "cancelled"
    assert "sleepy  running → cancelled" in err  # with --output json, progress goes to stderr


def test_usage_and_client_errors_exit_3(server: Server, tmp_path: Path) -> None:
    unknown = cli(server, "runs", "trigger", "ghost")
    assert unknown.returncode == 3 and "no DAG 'ghost'" in unknown.stderr
    bad = cli(server, "runs", "trigger", "ok", "--conf", '{"a": 1,}')
    assert bad.returncode == 3
    assert "--conf is not JSON: Expecting property name" in bad.stderr
    assert '  {"a": 1,}\n          ^' in bad.stderr  # the pointer at column 9
    missing = cli(server, "runs", "trigger", "ok", "--conf", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 3 and "no such file" in missing.stderr
    array = tmp_path / "array.json"
    array.write_text("[1]")
    assert (
        "must be a JSON object"
        in cli(server, "runs", "trigger", "ok", "--conf", f"@{array}").stderr
    )
    assert cli(server, "runs", "get", "ok", "ghost").returncode == 3
    assert cli(server, "runs", "trigger").returncode == 3  # argparse: DAG_ID missing
    both = cli(
        server, "tasks", "logs", "ok", "r", "a", "--server", server.url, "--db", "sqlite:///x.db"
    )
    assert both.returncode == 3 and "not both" in both.stderr
    for result in (unknown, bad, missing, both):
        assert "Traceback" not in result.stderr


def test_a_server_that_is_down_exits_4() -> None:
    down = cli(f"http://127.0.0.1:{free_port()}", "runs", "trigger", "ok", "--wait")
    assert down.returncode == 4 and "Connection refused" in down.stderr
    assert "Traceback" not in down.stderr


def test_a_wrong_token_exits_3(tmp_path: Path) -> None:
    guarded = Server(tmp_path, "--auth-token", "s3cret").start()
    try:
        wrong = cli(guarded, "runs", "list", "ok", "--token", "nope")
        assert wrong.returncode == 3 and "401" in wrong.stderr
        right = cli(guarded, "runs", "list", "ok", "--token", "s3cret")
        assert right.returncode == 0, right.stderr
    finally:
        guarded.stop()


def test_a_wait_survives_a_server_restart(tmp_path: Path) -> None:
    restarting = Server(tmp_path).start()
    try:
        waiter = subprocess.Popen(
            [sys.executable, "-m", "pipeline_core", "runs", "trigger", "steps", "--run-id", "r",
             "--wait", "--server", restarting.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, cwd=ROOT,
        )  # fmt: skip
        assert waiter.stdout is not None
        seen = waiter.stdout.readline()
        assert "first  queued → running" in seen, seen
        restarting.stop()  # mid-run: the try is stopped and resumes on the next start
        restarting.start()
        out, err = waiter.communicate(timeout=90)
        out = seen + out
        assert waiter.returncode == 0, err
        assert "run r of steps: success" in out
        assert "second  queued → running" in out or "second  queued → success" in out
    finally:
        restarting.stop()


def test_concurrent_triggers_with_one_key_make_one_run(server: Server) -> None:
    def trigger(_: int) -> dict:  # type: ignore[type-arg]
        answer = cli(
            server, "runs", "trigger", "ok", "--idempotency-key", "ci-7", "--output", "json"
        )
        assert answer.returncode == 0, answer.stderr
        return json.loads(answer.stdout)  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(trigger, range(8)))
    assert len({r["run_id"] for r in runs}) == 1
    assert sum(not r["idempotent_replay"] for r in runs) == 1


def test_run_commands(server: Server) -> None:
    assert cli(server, "runs", "trigger", "fails", "--run-id", "ops", "--wait").returncode == 1
    listed = json.loads(
        cli(server, "runs", "list", "fails", "--state", "failed", "--output", "json").stdout
    )
    assert "ops" in [r["run_id"] for r in listed]
    got = cli(server, "runs", "get", "fails", "ops")
    assert "boom" in got.stdout and "failed" in got.stdout
    dry = cli(server, "runs", "clear", "fails", "ops", "--dry-run")
    assert dry.returncode == 0 and "would clear: boom" in dry.stdout
    retried = cli(server, "runs", "retry", "fails", "ops")
    assert retried.returncode == 0 and "queued again: boom" in retried.stdout
    assert cli(server, "runs", "watch", "fails", "ops").returncode == 1
    marked = cli(server, "runs", "mark", "fails", "ops", "success")
    assert marked.returncode == 0 and "run ops of fails: success" in marked.stdout
    again = cli(server, "runs", "mark", "fails", "ops", "success")
    assert again.returncode == 3 and "already" in again.stderr
    assert cli(server, "runs", "watch", "fails", "ops").returncode == 0
    logs = cli(server, "tasks", "logs", "fails", "ops", "boom", "--try", "1")
    assert logs.returncode == 0 and "going down" in logs.stdout


def test_follow_a_log_from_the_cli(server: Server) -> None:
    assert cli(server, "runs", "trigger", "ok", "--run-id", "logs").returncode == 0
    followed = cli(server, "tasks", "logs", "ok", "logs", "b", "--follow")
    assert followed.returncode == 0 and "hello from b" in followed.stdout


def test_dags_and_pools(server: Server) -> None:
    paused = cli(server, "dags", "pause", "slow")
    assert paused.returncode == 0 and "DAG slow is paused" in paused.stdout
    assert "is unpaused" in cli(server, "dags", "unpause", "slow").stdout
    assert cli(server, "dags", "pause", "ghost").returncode == 3
    assert "pool ci: 3 slots" in cli(server, "pools", "set", "ci", "3").stdout
    assert "pool ci: 5 slots" in cli(server, "pools", "set", "ci", "5").stdout
    pools = json.loads(cli(server, "pools", "list", "--output", "json").stdout)
    assert {"ci", "default_pool"} <= {p["name"] for p in pools}
    assert cli(server, "pools", "delete", "ci").returncode == 0
    assert cli(server, "pools", "delete", "ci").returncode == 3
    assert cli(server, "pools", "set", "ci", "-1").returncode == 3


def test_backfill_across_a_dst_change(server: Server) -> None:
    dry = cli(server, "backfill", "berlin", "--from", "2026-03-28", "--to", "2026-03-30",
              "--dry-run", "--output", "json")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    dates = [d["logical_date"] for d in json.loads(dry.stdout)["dates"]]
    # 02:30 in Berlin: CET (UTC+1), then the skipped hour moves to 03:30 CEST, then CEST
    assert dates == ["2026-03-28T01:30:00.000000Z", "2026-03-29T01:30:00.000000Z",
                     "2026-03-30T00:30:00.000000Z"]  # fmt: skip
    done = cli(server, "backfill", "berlin", "--from", "2026-03-28", "--to", "2026-03-30",
               "--max-active-runs", "1", "--wait", "--output", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    backfill = json.loads(done.stdout)
    assert backfill["state"] == "completed" and backfill["counts"] == {"success": 3}
    assert [d["logical_date"] for d in backfill["dates"]] == dates
    runs = json.loads(cli(server, "runs", "list", "berlin", "--output", "json").stdout)
    assert sorted(r["logical_date"] for r in runs if r["run_type"] == "backfill") == dates
    # every date has a run now: reprocess none has nothing to do
    nothing = cli(server, "backfill", "berlin", "--from", "2026-03-28", "--to", "2026-03-30")
    assert nothing.returncode == 3 and "no date in the range needs a run" in nothing.stderr
    for args, message in (
        (("--from", "2026-03-30", "--to", "2026-03-28"), "the range is reversed"),
        (("--from", "2020-01-01", "--to", "2026-01-01"), "more than 1000 fire times"),
        (("--from", "yesterday", "--to", "2026-01-01"), "'from'"),
    ):
        refused = cli(server, "backfill", "berlin", *args)
        assert refused.returncode == 3 and message in refused.stderr, refused.stderr
    unscheduled = cli(server, "backfill", "ok", "--from", "2026-01-01", "--to", "2026-01-02")
    assert unscheduled.returncode == 3 and "no cron schedule" in unscheduled.stderr


def test_variables_connections_and_the_secret_key_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set and read shared settings on a server; a server restarted without the key that
    sealed its secrets refuses to start, naming the variable; a key is rotated."""
    key = subprocess.run([sys.executable, "-m", "pipeline_core", "secrets", "new-key"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    monkeypatch.setenv("PIPELINE_CORE_SECRET_KEY", key)
    server = Server(tmp_path).start()
    try:
        assert cli(server, "variables", "set", "region", '"eu"').returncode == 0
        done = cli(server, "variables", "set", "db_password", "hunter2-hunter2")
        assert done.returncode == 0, done.stderr
        listed = cli(server, "variables", "list").stdout
        assert "region" in listed and "hunter2" not in listed and "***" in listed
        assert cli(server, "variables", "get", "region").stdout.strip() == '"eu"'
        done = cli(server, "connections", "set", "wh", "postgresql://etl:pw-pw-pw@db:5432/w")
        assert done.returncode == 0, done.stderr
        assert "pw-pw-pw" not in cli(server, "connections", "get", "wh").stdout
        bad = cli(server, "connections", "set", "wh", "not a uri")
        assert bad.returncode != 0 and "'uri' must be text matching" in bad.stderr
    finally:
        server.stop()
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "serve", "--db", db, "--port", "0",
         "--dags-folder", str(server.folder)],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "PIPELINE_CORE_SECRET_KEY"},
    )  # fmt: skip
    assert refused.returncode != 0 and "no key is set" in refused.stderr
    new = subprocess.run([sys.executable, "-m", "pipeline_core", "secrets", "new-key"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    rotated = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "secrets", "rotate-key", "--db", db],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PIPELINE_CORE_SECRET_KEY": f"{new},{key}"},
    )  # fmt: skip
    assert rotated.returncode == 0 and "2 secret(s)" in rotated.stdout, rotated.stderr
