"""Task handlers, keyed by task ``type``: what actually runs for noop, python, shell, branch
and sensor tasks. A handler returns a ``Result`` or raises; the executor turns both into a
completion. Register more with ``HANDLERS[name] = handler``."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Protocol

from pipeline_core.dag.expressions import ExpressionError, parse_condition
from pipeline_core.dag.model import DAG
from pipeline_core.dag.templates import TemplateError
from pipeline_core.dag.validation import parse_until
from pipeline_core.engine.core.jobs import Result
from pipeline_core.engine.tasks.callables import CallableRef, UnresolvableCallable, resolve
from pipeline_core.engine.tasks.context import TaskContext, TaskFailed
from pipeline_core.engine.tasks.logs import ROUTER
from pipeline_core.engine.tasks.triggering import run_trigger_dag


class Handler(Protocol):
    def __call__(self, ctx: TaskContext) -> Result: ...


class ProcessHolder(Protocol):
    """Where a handler parks the process group it started, so that it can be killed."""

    def attach(self, pgid: int) -> None: ...


def run_noop(ctx: TaskContext) -> Result:
    return Result()


def run_python(ctx: TaskContext) -> Result:
    kwargs = {**_render(ctx, ctx.task.config.get("kwargs") or {}), **ctx.values}
    value = call_with_context(resolve_callable(ctx.task.config["callable"], ctx.dag), ctx, kwargs)
    if value is not None:
        ctx.xcom_push("return_value", value)
    return Result()


def run_shell(ctx: TaskContext) -> Result:
    command = _render(ctx, ctx.task.config["command"])
    env = {k: str(v) for k, v in _render(ctx, ctx.task.config.get("env") or {}).items()}
    cwd = _render(ctx, ctx.task.config.get("cwd"))
    code, last_line = run_process(ctx, ["/bin/sh", "-c", str(command)], env=env, cwd=cwd)
    if code != 0:
        raise TaskFailed(f"command exited with code {code}")
    if last_line is not None:
        ctx.xcom_push("return_value", _decode_line(last_line))
    return Result()


def run_branch(ctx: TaskContext) -> Result:
    config = ctx.task.config
    if "callable" in config:
        chosen = call_with_context(
            resolve_callable(config["callable"], ctx.dag), ctx, dict(ctx.values)
        )
        follow = [chosen] if isinstance(chosen, str) else list(chosen or [])
        if not all(isinstance(t, str) for t in follow):
            raise TaskFailed(f"branch callable must return task ids, got {chosen!r}")
    else:
        follow = list(config.get("default") or [])
        for index, branch in enumerate(config["branches"]):
            try:
                if parse_condition(branch["when"]).evaluate(ctx.resolve):
                    targets = branch["follow"]
                    follow = [targets] if isinstance(targets, str) else list(targets)
                    ctx.log.info(f"branch {index} ({branch['when']}) holds: following {follow}")
                    break
            except (ExpressionError, TemplateError) as exc:
                raise TaskFailed(str(exc)) from None
        else:
            ctx.log.info(f"no branch condition holds: following default {follow}")
    ctx.xcom_push("return_value", follow)
    return Result(follow=tuple(follow))


def run_sensor(ctx: TaskContext) -> Result:
    config = ctx.task.config
    if "poke" in config:
        kwargs = {**_render(ctx, config.get("kwargs") or {}), **ctx.values}
        ok = bool(call_with_context(resolve_callable(config["poke"], ctx.dag), ctx, kwargs))
    elif "file" in config:
        path = Path(str(_render(ctx, config["file"])))
        ok = path.exists()
        ctx.log.info(f"{path} {'exists' if ok else 'does not exist yet'}")
    else:
        ok = datetime.now(UTC) >= until_moment(ctx, config["until"])
    return Result(poke_ok=ok)


def until_moment(ctx: TaskContext, value: Any) -> datetime:
    """When a sensor's ``until`` is reached: a time of day is taken on the logical date, in the
    DAG's timezone."""
    from zoneinfo import ZoneInfo

    until = parse_until(value)
    if isinstance(until, time):
        tz = ZoneInfo(ctx.dag.timezone)
        day = ctx.run.logical_date.astimezone(tz).date()
        return datetime.combine(day, until, tzinfo=tz).astimezone(UTC)
    return until


HANDLERS: dict[str, Handler] = {
    "noop": run_noop,
    "python": run_python,
    "shell": run_shell,
    "branch": run_branch,
    "sensor": run_sensor,
    "trigger_dag": run_trigger_dag,
}


# --- helpers ---------------------------------------------------------------------------


def _render(ctx: TaskContext, value: Any) -> Any:
    try:
        return ctx.render(value)
    except TemplateError as exc:
        raise TaskFailed(str(exc)) from None


_CALLABLES: dict[str, Callable[..., Any]] = {}


def resolve_callable(
    spec: Callable[..., Any] | CallableRef | str, dag: DAG | None = None
) -> Callable[..., Any]:
    """A function from an object, a reference sent to a worker, or ``'module:function'``
    (imported once, then cached). One that cannot be found fails the try naming the DAG
    version the try runs (an older version may name code that is gone)."""
    of = f" (DAG '{dag.dag_id}' version {dag.version[:12]})" if dag is not None else ""
    if isinstance(spec, CallableRef):
        try:
            return resolve(spec)
        except UnresolvableCallable as exc:
            raise TaskFailed(f"cannot import callable '{spec.spec}'{of}: {exc}") from None
    if callable(spec):
        return spec
    found = _CALLABLES.get(spec)
    if found is None:
        module_name, _, attribute = spec.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise TaskFailed(f"cannot import callable '{spec}'{of}: {exc}") from None
        if not callable(target):
            raise TaskFailed(f"'{spec}' is not callable")
        found = _CALLABLES[spec] = target
    return found


def call_with_context(fn: Callable[..., Any], ctx: TaskContext, kwargs: dict[str, Any]) -> Any:
    """Call ``fn(**kwargs)``, adding ``context=ctx`` when it takes ``context`` or ``**kwargs``;
    what it prints goes to the task log."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if "context" in parameters or takes_any:
        kwargs = {**kwargs, "context": ctx}
    ROUTER.route(ctx.log)
    try:
        return fn(**kwargs)
    finally:
        ROUTER.route(None)


def run_process(
    ctx: TaskContext,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    holder: ProcessHolder | None = None,
) -> tuple[int, str | None]:
    """Run ``argv`` in its own process group, streaming its output to the task log.

    Returns the exit code and the last non-empty line it printed. The executor kills the
    whole group on timeout or cancel through ``holder`` (default ``ctx.process_holder``).
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd or None,
        start_new_session=ctx.children_in_own_group,
    )
    target = holder or ctx.process_holder
    if target is not None and ctx.children_in_own_group:
        target.attach(process.pid)
    last_line = None
    assert process.stdout is not None
    with process.stdout:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            ctx.log.write(line)
            if line.strip():
                last_line = line.strip()
    return process.wait(), last_line


def _decode_line(line: str) -> Any:
    """A shell task's last line: JSON objects and arrays are decoded, anything else is text."""
    if line[:1] in "{[":
        try:
            return json.loads(line)
        except ValueError:
            pass
    return line
