"""``Expansions``: the shell's side of dynamic task mapping. It reads the values a ready
mapped task maps over — an upstream task's XCom, the run's conf, a literal list — for the
core (which decides, from how many there are, to expand, skip or fail the task), and hands
each instance's own values to its tries.

The lists are read once per expansion and kept while the run is held, so 10,000 instances
cost one read, not 10,000; an engine that took a run over reads them again on its first
try of an instance.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

from pipeline_core.dag.mapping import MappingError, checked_lists, length, values_at
from pipeline_core.dag.model import DAG, Task
from pipeline_core.dag.templates import TemplateError
from pipeline_core.engine.core.jobs import Job
from pipeline_core.engine.core.messages import Resolved, ResolveMapping
from pipeline_core.engine.tasks.context import TaskContext, TaskFailed
from pipeline_core.engine.tasks.logs import TaskLog
from pipeline_core.errors import PipelineError
from pipeline_core.model import DagRun, TaskKey
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
Lists = dict[str, list[Any]]


class Expansions:
    def __init__(self, store: Store, max_length: int) -> None:
        self.store = store
        self.max_length = max_length
        self._lists: dict[TaskKey, Lists] = {}

    def resolve(self, request: ResolveMapping) -> Resolved:
        """How many instances the values of ``request``'s task make, or why it cannot be
        mapped (a message naming the key, where its values came from and what is wrong)."""
        key = request.key
        task = request.dag.task_dict[key.task_id]
        try:
            lists = self._read(request.dag, task, request.run)
        except (TemplateError, MappingError, TaskFailed) as exc:
            return Resolved(key, error=str(exc))
        except PipelineError as exc:  # the store cannot answer: the task cannot be mapped
            logger.error("could not read the values of mapped task %s: %s", key, exc)
            return Resolved(key, error=f"could not read the values to map over: {exc}")
        self._lists[key] = lists
        assert task.expansion is not None
        return Resolved(key, count=length(task.expansion, lists))

    def with_values(self, job: Job) -> Job:
        """``job`` with its instance's values (unchanged for a task that is not mapped; with
        none when they cannot be read, which fails the try with a message)."""
        key, expansion = job.key, job.task.expansion
        if key.map_index < 0 or expansion is None:
            return job
        lists = self._lists.get(key.parent)
        if lists is None:
            try:
                lists = self._lists[key.parent] = self._read(job.dag, job.task, job.run)
            except (TemplateError, MappingError, TaskFailed, PipelineError) as exc:
                logger.error("could not read the values of %s: %s", key, exc)
                return job
        try:
            return dataclasses.replace(job, map_values=values_at(expansion, lists, key.map_index))
        except IndexError:
            return job

    def forget(self, run_key: tuple[str, str]) -> None:
        """A run ended: its lists are not needed any more."""
        for key in [k for k in self._lists if (k.dag_id, k.run_id) == run_key]:
            del self._lists[key]

    def _read(self, dag: DAG, task: Task, run: DagRun) -> Lists:
        expansion = task.expansion
        assert expansion is not None
        # Rendering reads XCom and the conf only: no try, so no log.
        context = TaskContext(dag, task, run, 0, self.store.task_data, cast(TaskLog, None))
        resolved = {
            name: context.render(source) if isinstance(source, str) else source
            for name, source in expansion.sources.items()
        }
        return checked_lists(expansion, resolved, self.max_length)
