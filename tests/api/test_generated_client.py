"""The OpenAPI document as a third-party client sees it: a client generated from it by
openapi-python-client imports, and its calls work against a served instance over the wire,
each answer parsed into the generated models.

Every operation is called but the event stream (a stream: tests/api/test_sse.py). The
metrics' text expositions are operations of their own: the generator reads Prometheus text
(``text/plain``) as text; it knows no parser for OpenMetrics' own media type, so that call
hands back the answer's bytes, as the generator does for any media type it does not know."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.api.routes.builder import api_document as document
from tests.api.engine_system import System
from tests.conftest import needs_tool

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "pc_generated"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported from a folder of its own."""
    needs_tool(GENERATOR, "openapi-python-client")
    folder = tmp_path_factory.mktemp("generated")
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(document()))
    config = folder / "config.yaml"
    config.write_text(
        f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"
    )
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(folder / PACKAGE), "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=120, cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def system(module_system: System) -> System:
    """One deployment for the whole module: its tests do not depend on each other's runs."""
    return module_system


class Calls:
    """Calls an operation by its id, with a body given as a dict."""

    def __init__(self, package: Any, port: int) -> None:
        self.package = package
        self.client = package.Client(
            base_url=f"http://127.0.0.1:{port}", raise_on_unexpected_status=True
        )

    def __call__(
        self, operation_id: str, *args: Any, body: dict[str, Any] | None = None, **kw: Any
    ) -> Any:
        tag = next(
            t for t in ("health", "dags", "runs", "tasks", "pools", "metrics", "events")
            if importlib.util.find_spec(f"{PACKAGE}.api.{t}.{operation_id}") is not None
        )  # fmt: skip
        module = importlib.import_module(f"{PACKAGE}.api.{tag}.{operation_id}")
        if body is not None:
            models = importlib.import_module(f"{PACKAGE}.models.{operation_id}_body")
            name = "".join(part.title() for part in operation_id.split("_")) + "Body"
            kw["body"] = getattr(models, name).from_dict(body)
        return module.sync_detailed(*args, client=self.client, **kw)


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200,)), (response.status_code, response.content)
    assert response.parsed is not None and type(response.parsed).__name__ != "Error"
    return response.parsed


@pytest.fixture
def call(generated: Any, system: System) -> Iterator[Calls]:
    calls = Calls(generated, system.server.port)
    with calls.client:  # its connections close with it
        yield calls


def test_the_generated_client_imports_and_every_call_works(call):
    assert _ok(call("get_health")).data.status.value in ("healthy", "degraded")
    assert _ok(call("get_version")).data.api_version == "v1"
    assert "etl" in [d.dag_id for d in _ok(call("list_dags", limit=50)).data]
    assert _ok(call("get_dag", "etl")).data.dag_id == "etl"
    assert _ok(call("patch_dag", "flaky", body={"is_paused": False})).data.is_paused is False
    assert _ok(call("list_import_errors")).data[0].filename.endswith("broken.yaml")
    # a run, its tasks, XCom, logs, stats and metrics
    triggered = _ok(call("trigger_run", "etl", body={"run_id": "gen", "conf": {"k": 1}}), 201)
    assert triggered.data.run_id == "gen"
    ended = _ok(call("wait_run", "etl", "gen", timeout=30))
    assert ended.data.state.value == "success"
    assert _ok(call("get_run", "etl", "gen")).data.conf.to_dict() == {"k": 1}
    assert [r.run_id for r in _ok(call("list_runs", "etl")).data] == ["gen"]
    tasks = _ok(call("list_task_instances", "etl", "gen")).data
    assert [t.task_id for t in tasks] == ["extract", "load"]
    assert _ok(call("get_task_instance", "etl", "gen", "load")).data.state.value == "success"
    assert _ok(call("get_xcom", "etl", "gen", "load", limit=1)).data[0].key == "return_value"
    assert '"rows": 3' in _ok(call("get_log", "etl", "gen", "extract")).data.text
    assert _ok(call("get_dag_stats", "etl")).data.runs.total >= 1
    assert _ok(call("get_metrics")).data is not None
    prometheus = call("get_metrics_prometheus")
    assert prometheus.status_code == 200 and b"# TYPE pipeline_core_" in prometheus.content
    assert prometheus.headers["content-type"].startswith("text/plain; version=0.0.4")
    call.client.raise_on_unexpected_status = False
    openmetrics = call("get_metrics_openmetrics")
    call.client.raise_on_unexpected_status = True
    assert openmetrics.status_code == 200 and openmetrics.content.endswith(b"# EOF\n")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    # marks, clears, retries, cancels
    patched = _ok(call("patch_run", "etl", "gen", body={"note": "seen"}))
    assert patched.data.note == "seen"
    cleared = _ok(call("clear_run", "etl", "gen", body={"task_ids": ["load"], "dry_run": True}))
    assert cleared.data.task_ids == ["load"]
    marked = _ok(call("patch_task_instance", "etl", "gen", "load", body={"state": "failed"}))
    assert marked.data.state.value == "failed"
    retried = _ok(call("retry_run", "etl", "gen", body={"task_ids": ["load"]}))
    assert retried.data.run.run_id == "gen" and retried.data.requeued_task_ids == ["load"]
    _ok(call("trigger_run", "slow", body={"run_id": "long"}), 201)
    assert _ok(call("cancel_run", "slow", "long")).data.state.value in ("cancelled", "running")
    # backfills
    # (the models parse date-times: a plain date would become its midnight)
    backfill = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T23:59:59Z", "dry_run": True}
    assert _ok(call("create_backfill", "etl", body=backfill)).data.runs == 2
    made = _ok(call("create_backfill", "etl", body={**backfill, "dry_run": False}), 201).data
    assert _ok(call("get_backfill", "etl", made.id)).data.id == made.id
    assert [b.id for b in _ok(call("list_backfills", "etl")).data] == [made.id]
    assert _ok(call("cancel_backfill", "etl", made.id)).data.id == made.id
    # pools
    assert _ok(call("create_pool", body={"name": "gen", "slots": 2}), 201).data.slots == 2
    assert _ok(call("patch_pool", "gen", body={"slots": 3})).data.slots == 3
    assert "gen" in [p.name for p in _ok(call("list_pools")).data]
    assert _ok(call("delete_pool", "gen")).data.name == "gen"
    assert _ok(call("get_openapi")) is not None
