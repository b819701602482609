"""The execution engine: one orchestrator thread per process, executors, task handlers."""

from pipeline_core.engine.control import Control
from pipeline_core.engine.orchestrator import Engine
from pipeline_core.engine.settings import EngineSettings

__all__ = ["Control", "Engine", "EngineSettings"]
