"""DAGs whose tasks are kept packed: decoded while read, at most ``DECODED_MAX`` at once."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator

import pytest

from pipeline_core.dag import packed
from pipeline_core.dag.model import DAG, Task
from pipeline_core.dag.packed import is_decoded, pack
from pipeline_core.dag.serialize import dag_to_dict
from pipeline_core.dag.yaml_loader import load_dag_text

TEXT = """\
dag_id: {dag_id}
schedule: "@daily"
start_date: 2030-01-01
default_args: {{retries: 1}}
tasks:
  extract: {{type: shell, command: "echo {{{{ ds }}}}", pool: io}}
  load: {{type: python, callable: "json:dumps", kwargs: {{obj: 1}}, depends_on: [extract]}}
  done: {{type: noop, depends_on: [load], trigger_rule: all_done}}
"""


def a_dag(dag_id: str = "packed") -> DAG:
    return load_dag_text(TEXT.format(dag_id=dag_id))


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """At most three packed DAGs decoded at once."""
    monkeypatch.setattr(packed.DECODED, "size", 3)
    yield


def test_a_packed_dag_reads_as_it_was_and_holds_bytes_until_read() -> None:
    dag = a_dag()
    before = (dag_to_dict(dag), dag.version, dag.tasks, dict(dag.task_dict))
    assert pack(dag) and not is_decoded(dag)
    assert dag.dag_id == "packed" and dag.schedule == "@daily"  # the rest is as it was
    assert not is_decoded(dag)
    assert dag.tasks == before[2] and is_decoded(dag)
    assert (dag_to_dict(dag), dag.version, dict(dag.task_dict)) == (
        before[0],
        before[1],
        before[3],
    )
    assert dag.get_task("extract").pool == "io"
    assert dag == a_dag() and a_dag() == dag
    assert pack(dag)  # again: nothing to do


def test_only_the_dags_read_last_stay_decoded(small: None) -> None:
    dags = [a_dag(f"d{i}") for i in range(10)]
    for dag in dags:
        pack(dag)
    for dag in dags:
        assert [t.task_id for t in dag.tasks] == ["extract", "load", "done"]
    assert [is_decoded(d) for d in dags] == [False] * 7 + [True] * 3
    assert packed.DECODED.count() == 3
    dags[0].get_task("load")  # read again: decoded, and the least recent one gives way
    assert [is_decoded(d) for d in dags] == [True] + [False] * 7 + [True] * 2
    unpacked = a_dag("unpacked")
    assert all(dag.tasks for dag in dags)
    assert is_decoded(unpacked)  # a DAG never packed is not counted and keeps its tasks


def test_a_packed_dag_pickles_packed_and_comes_back_equal() -> None:
    """As the parsed-files cache and the workers get it: its tasks stay bytes until read."""
    dag = a_dag()
    pack(dag)
    assert dag.tasks and is_decoded(dag)  # read just now: its decoded tasks are not pickled
    again = pickle.loads(packed.dumps(dag))
    assert not is_decoded(again) and again == a_dag() and again.version == a_dag().version


def test_tasks_that_cannot_be_pickled_stay_as_they_are() -> None:
    dag = DAG("py", tasks=(Task("t", "python", config={"callable": lambda: 1}),))
    assert not pack(dag)
    assert is_decoded(dag) and dag.tasks[0].task_id == "t"


def test_readers_on_many_threads_always_see_whole_tasks(small: None) -> None:
    dags = [a_dag(f"d{i}") for i in range(20)]
    for dag in dags:
        pack(dag)
    wrong: list[str] = []

    def read(offset: int) -> None:
        for n in range(2_000):
            dag = dags[(n * 7 + offset) % len(dags)]
            if [t.task_id for t in dag.tasks] != ["extract", "load", "done"]:
                wrong.append(dag.dag_id)
            if dag.get_task("load").depends_on != ("extract",):
                wrong.append(dag.dag_id)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == [] and packed.DECODED.count() <= 3
