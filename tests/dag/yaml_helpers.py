"""What the YAML loader tests share: the examples folder, a full example, and loading helpers."""

import textwrap
from pathlib import Path

import pytest

from pipeline_core.dag.model import DAG
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import DagValidationError, Issue

EXAMPLES = Path(__file__).parents[2] / "examples" / "dags"
FULL = """\
dag_id: etl_daily
description: Nightly ETL
schedule: "0 6 * * *"
timezone: Europe/Berlin
start_date: 2026-01-01
catchup: false
max_active_runs: 1
concurrency: 16
tags: [etl, production]
default_args: {retries: 2, retry_delay: 30s, timeout: 10m}
tasks:
  extract:
    type: shell
    command: "echo '{\\"rows\\": 3}'"
  transform:
    type: python
    callable: "examples_lib.etl:transform"
    depends_on: [extract]
  check:
    type: branch
    depends_on: [transform]
    branches:
      - when: "{{ xcom.transform.return_value.rows }} > 0"
        follow: [load]
    default: [alert]
  load:   {type: noop, depends_on: [check], pool: db, priority_weight: 10}
  alert:  {type: noop, depends_on: [check]}
  report: {type: noop, depends_on: [load, alert], trigger_rule: none_failed}
"""


def load(text: str, **kwargs) -> DAG:
    kwargs.setdefault("default_dag_id", "dag")
    return load_dag_text(textwrap.dedent(text), filename="dag.yaml", **kwargs)


def issues(text: str) -> list[Issue]:
    with pytest.raises(DagValidationError) as info:
        load(text)
    return info.value.issues


def only_issue(text: str) -> Issue:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]
