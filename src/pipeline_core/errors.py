"""The exception hierarchy: every failure carries a stable machine ``code``.

The API maps these to HTTP statuses in one place (by walking the class's MRO), so
callers never need to know about HTTP and the API never needs to know about stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PipelineError(Exception):
    """Root of every error pipeline-core raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigurationError(PipelineError):
    """Something the operator configured cannot work (missing extra, bad URL, ...)."""

    code = "configuration_error"


class InvalidRequest(PipelineError):
    """The caller asked for something malformed."""

    code = "invalid_request"


class NotFound(PipelineError):
    """The named DAG, run, task, pool or entry does not exist."""

    code = "not_found"


class Conflict(PipelineError):
    """The request clashes with the current state (duplicate id, lost race, ...)."""

    code = "conflict"


class InvalidTransition(Conflict):
    """A state change that the state machine does not allow."""

    code = "invalid_state"


class StoreUnavailable(PipelineError):
    """The database cannot be reached or is unusable."""

    code = "unavailable"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found while loading or validating a DAG definition.

    ``path`` is a field path such as ``tasks.load.depends_on[1]`` (empty for the whole
    document); ``line`` is 1-based when known.
    """

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<dag>"
        if self.line is not None:
            where += f":{self.line}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class DagValidationError(InvalidRequest):
    """A DAG definition is invalid; ``issues`` lists every problem found, not just the first."""

    code = "invalid_dag"

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        summary = "; ".join(str(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(
            f"{len(self.issues)} problem(s): {summary}{more}",
            details={"issues": [issue.to_dict() for issue in self.issues]},
        )
