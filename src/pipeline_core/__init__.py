"""pipeline-core: a small, fast workflow orchestrator."""

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("pipeline-core")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

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
