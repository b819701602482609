"""pipeline-core: a small, fast workflow orchestrator."""

from pipeline_core._version import __version__
from pipeline_core.dag.authoring import (
    DAG,
    branch_task,
    noop_task,
    python_task,
    sensor_task,
    shell_task,
    task,
)
from pipeline_core.state import RunState, TaskState, TriggerRule

__all__ = [
    "DAG",
    "RunState",
    "TaskState",
    "TriggerRule",
    "__version__",
    "branch_task",
    "noop_task",
    "python_task",
    "sensor_task",
    "shell_task",
    "task",
]
