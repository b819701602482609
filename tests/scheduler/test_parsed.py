"""Parsed YAML DAG files kept across restarts: a restart parses no file whose text is as it
was, a changed file is parsed again, Python files always run, and a cache that is damaged, of
another version, someone else's or cannot be written is only a slower start."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest

from pipeline_core.cli import build_parser
from pipeline_core.cli.common import parsed_cache
from pipeline_core.dag import bag, packed
from pipeline_core.dag.packed import is_decoded
from pipeline_core.dag.serialize import dag_to_dict
from pipeline_core.scheduler.parsed import ParsedFiles, default_path
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import open_store

DAG = """\
description: kept {n}
schedule: "0 6 * * *"
timezone: Europe/Berlin
start_date: 2030-01-01
tags: [kept]
default_args: {{retries: 2, retry_delay: 1s, timeout: 5m}}
tasks:
  extract: {{type: shell, command: "echo '{{{{ ds }}}} {n}'"}}
  check:
    type: branch
    depends_on: [extract]
    branches:
      - when: "{{{{ xcom.extract.return_value }}}} > 0"
        follow: [load]
    default: [alert]
  load: {{type: python, callable: "json:dumps", kwargs: {{obj: 1}}, depends_on: [check]}}
  alert: {{type: noop, depends_on: [check]}}
  report: {{type: noop, depends_on: [load, alert], trigger_rule: none_failed}}
"""
PY = """\
from pipeline_core import DAG, task

with DAG("py", schedule="@daily", start_date="2030-01-01") as dag:

    @task
    def hello() -> int:
        return 1

    hello()
"""


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The YAML files parsed, by name."""
    seen: list[str] = []
    original = bag.load_dag_text

    def counting(text: str, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(Path(kwargs["filename"]).name)
        return original(text, **kwargs)

    monkeypatch.setattr(bag, "load_dag_text", counting)
    return seen


def folder_of(tmp_path: Path, count: int = 5) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    for n in range(count):
        (folder / f"d{n}.yaml").write_text(DAG.format(n=n))
    (folder / "py.py").write_text(PY)
    return folder


def definitions(dags):  # type: ignore[no-untyped-def]
    return {dag_id: dag_to_dict(dag) for dag_id, dag in dags.items()}


def test_a_restart_parses_no_unchanged_file_and_gets_the_same_dags(tmp_path, parses) -> None:  # type: ignore[no-untyped-def]
    folder, cache = folder_of(tmp_path), tmp_path / "cache" / "dags.pickle"
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    first = DagSync(store, folder, parsed_cache=cache).refresh()
    assert len(parses) == 5 and cache.exists()
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    parses.clear()
    (folder / "d1.yaml").write_text(DAG.format(n="changed"))
    again = DagSync(store, folder, parsed_cache=cache).refresh()  # a restart
    assert parses == ["d1.yaml"]
    assert set(again) == {"d0", "d1", "d2", "d3", "d4", "py"}
    first_defs, again_defs = definitions(first), definitions(again)
    assert again_defs["d0"] == first_defs["d0"] and again_defs["d1"] != first_defs["d1"]
    assert again["py"].tasks[0].task_id == "hello"  # Python files always run
    assert ParsedFiles(cache).get(str(folder / "py.py")) is None  # never kept
    assert ParsedFiles(cache).get(str(folder / "d0.yaml")) is not None
    written = cache.stat().st_mtime_ns
    parses.clear()
    DagSync(store, folder, parsed_cache=cache).refresh()  # nothing changed: nothing written
    assert parses == [] and cache.stat().st_mtime_ns == written
    store.close()


def test_a_cache_that_cannot_be_trusted_is_ignored(tmp_path, parses, caplog) -> None:  # type: ignore[no-untyped-def]
    folder, cache = folder_of(tmp_path), tmp_path / "dags.pickle"
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    DagSync(store, folder, parsed_cache=cache).refresh()
    kept = cache.read_bytes()
    cases = {
        "damaged": kept[: len(kept) // 2],
        "another version": pickle.dumps((("pipeline-core-parsed/1", "0.0.1", (3, 9)), {})),
        "not a cache": b"hello",
    }
    with caplog.at_level(logging.WARNING):
        for name, data in cases.items():
            cache.write_bytes(data)
            parses.clear()
            assert len(DagSync(store, folder, parsed_cache=cache).refresh()) == 6, name
            assert len(parses) == 5, name
        cache.write_bytes(kept)
        os.chmod(cache, 0o666)  # anyone could have written it
        parses.clear()
        DagSync(store, folder, parsed_cache=cache).refresh()
        assert len(parses) == 5
    assert "ignoring the parsed DAG files" in caplog.text
    assert "it is not this user's alone" in caplog.text
    store.close()


def test_a_cache_that_cannot_be_written_is_a_warning(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    folder = folder_of(tmp_path)
    (tmp_path / "a-file").write_text("")
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with caplog.at_level(logging.WARNING):
        dags = DagSync(store, folder, parsed_cache=tmp_path / "a-file" / "dags.pickle").refresh()
    assert len(dags) == 6 and "cannot keep the parsed DAG files" in caplog.text
    store.close()


def test_where_the_cache_lives(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PIPELINE_CORE_CACHE_DIR", str(tmp_path / "c"))
    path = default_path(tmp_path / "dags")
    assert path.parent == tmp_path / "c" and path.name.startswith("dags-")
    assert default_path(tmp_path / "other") != path
    monkeypatch.delenv("PIPELINE_CORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_path(tmp_path / "dags").parent == tmp_path / "x" / "pipeline-core"
    args = build_parser().parse_args(["serve", "--dags-folder", str(tmp_path / "dags")])
    assert parsed_cache(args) == default_path(tmp_path / "dags")
    none = build_parser().parse_args(["scheduler", "--dag-cache", ""])
    assert parsed_cache(none) is None
    there = build_parser().parse_args(["serve", "--dag-cache", str(tmp_path / "p.pickle")])
    assert parsed_cache(there) == tmp_path / "p.pickle"


def test_a_restart_writes_only_the_dags_the_store_does_not_have_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = folder_of(tmp_path), tmp_path / "dags.pickle"
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    DagSync(store, folder, parsed_cache=cache).refresh()
    (folder / "d2.yaml").write_text(DAG.format(n="edited"))
    store.dags.deactivate_missing_dags(["d0", "d1", "d2", "d4", "py"])  # d3 inactive, say
    written: list[str] = []
    real = store.dags.upsert_dag

    def upsert(record, **kwargs):  # type: ignore[no-untyped-def]
        written.append(record.dag_id)
        return real(record, **kwargs)

    monkeypatch.setattr(store.dags, "upsert_dag", upsert)
    sync = DagSync(store, folder, parsed_cache=cache)
    dags = sync.refresh(budget=0)  # in steps, as the scheduler loads: a file a step here
    while sync.loading:
        dags = sync.refresh(budget=0)
    # d2 changed, d3 must be active again, py was run again (no kept hash): written; the
    # rest the store has as they are
    assert sorted(written) == ["d2", "d3", "py"]
    assert store.dags.get_dag("d3").is_active
    assert store.dags.get_dag("d2").description == "kept edited"
    assert set(dags) == {"d0", "d1", "d2", "d3", "d4", "py"}
    store.close()


def test_the_folders_dags_are_kept_packed_and_a_restart_decodes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DAGs no run or due schedule reads hold their tasks as bytes: after loading, only the
    few read last are decoded, and a restart from the cache reads none of their tasks."""
    monkeypatch.setattr(packed.DECODED, "size", 3)
    folder, cache = folder_of(tmp_path, count=12), tmp_path / "dags.pickle"
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    first = DagSync(store, folder, parsed_cache=cache).refresh()
    yaml_dags = [dag for dag_id, dag in first.items() if dag_id != "py"]
    assert sum(map(is_decoded, yaml_dags)) <= 3 and is_decoded(first["py"])
    again = DagSync(store, folder, parsed_cache=cache).refresh()  # a restart
    assert not any(is_decoded(dag) for dag_id, dag in again.items() if dag_id != "py")
    assert definitions(again) == definitions(first)  # read on demand, as they were
    store.close()
