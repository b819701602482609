"""An in-process store for tests and throwaway runs: the same contract, nothing on disk."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.state import FINISHED_RUN_STATES, RunState, TaskState
from pipeline_core.store._common import (
    apply_run_change,
    apply_task_change,
    clip_log,
    dag_event,
    pool_event,
    run_event_payload,
    run_not_found,
    task_event_payload,
    task_not_found,
    to_json,
)
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.types import (
    DEFAULT_POOL_SLOTS,
    PERCENTILES,
    DagRecord,
    DagRun,
    Event,
    EventQuery,
    Heartbeat,
    ImportError_,
    LogChunk,
    Page,
    Pool,
    RunQuery,
    RunStats,
    TaskChange,
    TaskInstance,
    TaskInstanceQuery,
    TaskKey,
    TaskSpec,
    TaskStats,
    XComEntry,
    iso,
    nearest_rank,
    utcnow,
)

Listener = Callable[[list[Event]], None]


@dataclass
class _Log:
    data: bytearray
    truncated: bool = False


class MemoryStore:
    """``Store`` held in dictionaries behind one lock."""

    supports_notify = True

    def __init__(self, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        self.url = "memory://"
        self.log_cap_bytes = log_cap_bytes
        #: What "now" is for timestamps; tests inject a fake clock here.
        self.clock: Callable[[], datetime] = utcnow
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._dags: dict[str, DagRecord] = {}
        self._runs: dict[tuple[str, str], DagRun] = {}
        self._run_order: dict[tuple[str, str], int] = {}
        self._tis: dict[tuple[str, str], dict[str, TaskInstance]] = {}
        self._xcom: dict[TaskKey, dict[str, XComEntry]] = {}
        self._pools: dict[str, Pool] = {
            "default_pool": Pool("default_pool", DEFAULT_POOL_SLOTS, "Default pool")
        }
        self._logs: dict[tuple[TaskKey, int], _Log] = {}
        self._heartbeats: dict[str, Heartbeat] = {}
        self._events: list[Event] = []
        self._last_seq = 0
        self._next_run = 0
        self._listeners: list[Listener] = []
        self._import_errors: list[ImportError_] = []

    # --- plumbing --------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        pass

    def ping(self) -> None:
        pass

    def _emit(
        self, items: Sequence[tuple[str, Mapping[str, Any], str | None, str | None, str | None]]
    ) -> list[Event]:
        """Append events; the caller holds the lock. Listeners run after it is released."""
        now = self.clock()
        events = []
        for kind, payload, dag_id, run_id, task_id in items:
            self._last_seq += 1
            events.append(Event(self._last_seq, kind, now, dag_id, run_id, task_id, dict(payload)))
        self._events.extend(events)
        self._changed.notify_all()
        return events

    def _publish(self, events: list[Event]) -> None:
        if events:
            for listener in list(self._listeners):
                listener(events)

    # --- DAGs -----------------------------------------------------------------------
    def upsert_dag(self, record: DagRecord) -> DagRecord:
        to_json(list(record.tags), "tags")
        if record.definition is not None:
            to_json(record.definition, "definition")
        with self._lock:
            existing = self._dags.get(record.dag_id)
            stored = replace(record, is_paused=existing.is_paused if existing else record.is_paused)
            if existing is not None and replace(existing, last_parsed_at=None) == replace(
                stored, last_parsed_at=None
            ):
                return existing
            self._dags[record.dag_id] = stored
            events = self._emit([dag_event(stored, "created" if existing is None else "updated")])
        self._publish(events)
        return stored

    def get_dag(self, dag_id: str) -> DagRecord:
        with self._lock:
            if dag_id not in self._dags:
                raise NotFound(f"no DAG '{dag_id}'")
            return self._dags[dag_id]

    def list_dags(
        self,
        *,
        tags: Sequence[str] = (),
        is_paused: bool | None = None,
        is_active: bool | None = None,
        dag_id_pattern: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[DagRecord]:
        with self._lock:
            found = [
                d
                for _, d in sorted(self._dags.items())
                if (is_paused is None or d.is_paused == is_paused)
                and (is_active is None or d.is_active == is_active)
                and (not dag_id_pattern or dag_id_pattern.lower() in d.dag_id.lower())
                and (not tags or any(t in d.tags for t in tags))
            ]
        listed = [replace(d, definition=None) for d in found[offset : offset + limit]]
        return Page(listed, len(found), limit, offset)

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        with self._lock:
            record = self.get_dag(dag_id)
            if record.is_paused == paused:
                return record
            record = self._dags[dag_id] = replace(record, is_paused=paused)
            events = self._emit([dag_event(record, "paused" if paused else "unpaused")])
        self._publish(events)
        return record

    def deactivate_missing_dags(self, active_dag_ids: Sequence[str]) -> list[str]:
        keep = set(active_dag_ids)
        with self._lock:
            gone = [d for d in sorted(self._dags) if self._dags[d].is_active and d not in keep]
            for dag_id in gone:
                self._dags[dag_id] = replace(self._dags[dag_id], is_active=False)
            events = self._emit([dag_event(self._dags[d], "deactivated") for d in gone])
        self._publish(events)
        return gone

    def replace_import_errors(self, errors: Sequence[ImportError_]) -> None:
        for error in errors:
            to_json(list(error.issues), "issues")
        with self._lock:
            self._import_errors = sorted(errors, key=lambda e: e.filename)

    def list_import_errors(self) -> list[ImportError_]:
        with self._lock:
            return list(self._import_errors)

    # --- runs -----------------------------------------------------------------------
    def create_run(self, run: DagRun, tasks: Sequence[TaskSpec]) -> DagRun:
        to_json(dict(run.conf), "conf")
        stored = replace(
            run,
            queued_at=run.queued_at or self.clock(),
            conf=json.loads(json.dumps(dict(run.conf))),
        )
        with self._lock:
            key = (run.dag_id, run.run_id)
            if key in self._runs:
                raise Conflict(f"run '{run.run_id}' of DAG '{run.dag_id}' already exists")
            if run.run_type == "scheduled" and any(
                r.dag_id == run.dag_id
                and r.run_type == "scheduled"
                and r.logical_date == run.logical_date
                for r in self._runs.values()
            ):
                raise Conflict(
                    f"DAG '{run.dag_id}' already has a scheduled run for {iso(run.logical_date)}"
                )
            self._runs[key] = stored
            self._next_run += 1
            self._run_order[key] = self._next_run
            self._tis[key] = {
                t.task_id: TaskInstance(
                    run.dag_id,
                    run.run_id,
                    t.task_id,
                    TaskState.QUEUED,
                    0,
                    t.max_tries,
                    t.pool,
                    t.priority_weight,
                )
                for t in tasks
            }
            payload = run_event_payload(stored, None, self.clock())
            events = self._emit([("run.state_changed", payload, run.dag_id, run.run_id, None)])
        self._publish(events)
        return stored

    def get_run(self, dag_id: str, run_id: str) -> DagRun:
        with self._lock:
            run = self._runs.get((dag_id, run_id))
        if run is None:
            raise run_not_found(dag_id, run_id)
        return run

    def transition_run(
        self,
        dag_id: str,
        run_id: str,
        expected: RunState,
        new: RunState,
        *,
        reason: str | None = None,
    ) -> DagRun:
        with self._lock:
            current = self.get_run(dag_id, run_id)
            now = self.clock()
            updated = self._runs[(dag_id, run_id)] = apply_run_change(current, expected, new, now)
            payload = run_event_payload(updated, current.state, now, reason)
            events = self._emit([("run.state_changed", payload, dag_id, run_id, None)])
        self._publish(events)
        return updated

    def delete_run(self, dag_id: str, run_id: str) -> None:
        with self._lock:
            if (dag_id, run_id) not in self._runs:
                raise run_not_found(dag_id, run_id)
            self._drop_run((dag_id, run_id))

    def _drop_run(self, key: tuple[str, str]) -> None:
        del self._runs[key], self._run_order[key]
        for task_id in self._tis.pop(key, {}):
            task_key = TaskKey(key[0], key[1], task_id)
            self._xcom.pop(task_key, None)
            for log_key in [k for k in self._logs if k[0] == task_key]:
                del self._logs[log_key]

    def prune_runs(self, dag_id: str, older_than: datetime) -> int:
        with self._lock:
            doomed = [
                k
                for k, r in self._runs.items()
                if r.dag_id == dag_id
                and r.logical_date < older_than
                and r.state in FINISHED_RUN_STATES
            ]
            for key in doomed:
                self._drop_run(key)
        return len(doomed)

    def query_runs(self, query: RunQuery) -> Page[DagRun]:
        with self._lock:
            found = [
                (self._run_order[k], r) for k, r in self._runs.items() if _run_matches(r, query)
            ]
        field = query.order_by.lstrip("-")
        descending = query.order_by.startswith("-")
        present = [(o, r) for o, r in found if _run_sort_value(r, field) is not None]
        missing = [(o, r) for o, r in found if _run_sort_value(r, field) is None]
        present.sort(
            key=lambda item: (_run_sort_value(item[1], field), item[0]), reverse=descending
        )
        missing.sort(key=lambda item: item[0], reverse=descending)
        ordered = [r for _, r in present + missing]
        return Page(
            ordered[query.offset : query.offset + query.limit],
            len(ordered),
            query.limit,
            query.offset,
        )

    def run_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> RunStats:
        with self._lock:
            runs = [
                r for r in self._runs.values() if r.dag_id == dag_id and _in_window(r, since, until)
            ]
        by_state: dict[str, int] = {}
        for run in runs:
            by_state[run.state.value] = by_state.get(run.state.value, 0) + 1
        durations = sorted(r.duration_ms for r in runs if r.duration_ms is not None and r.end_date)
        pct = {
            q: durations[nearest_rank(len(durations), q)] if durations else None
            for q in PERCENTILES
        }
        finished = sum(n for s, n in by_state.items() if s in ("success", "failed", "cancelled"))
        return RunStats(
            total=len(runs),
            by_state=by_state,
            success_rate=by_state.get("success", 0) / finished if finished else 0.0,
            duration_avg=sum(durations) / len(durations) if durations else None,
            duration_min=durations[0] if durations else None,
            duration_max=durations[-1] if durations else None,
            duration_p50=pct[50],
            duration_p90=pct[90],
            duration_p99=pct[99],
        )

    def task_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[TaskStats]:
        grouped: dict[str, list[TaskInstance]] = {}
        with self._lock:
            for (run_dag, run_id), by_task in self._tis.items():
                if run_dag == dag_id and _in_window(self._runs[(run_dag, run_id)], since, until):
                    for ti in by_task.values():
                        if ti.try_number > 0:
                            grouped.setdefault(ti.task_id, []).append(ti)
        stats = []
        for task_id, tis in sorted(grouped.items()):
            durations = [t.duration_ms for t in tis if t.duration_ms is not None]
            ok = [t.end_date for t in tis if t.state is TaskState.SUCCESS and t.end_date]
            bad = [t.end_date for t in tis if t.state is TaskState.FAILED and t.end_date]
            stats.append(
                TaskStats(
                    task_id=task_id,
                    runs=len(tis),
                    avg_duration_ms=sum(durations) / len(durations) if durations else None,
                    failure_rate=sum(1 for t in tis if t.state is TaskState.FAILED) / len(tis),
                    retry_rate=sum(1 for t in tis if t.try_number > 1) / len(tis),
                    last_success=max(ok, default=None),
                    last_failure=max(bad, default=None),
                )
            )
        return stats

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, DagRun]:
        wanted = set(dag_ids)
        newest: dict[str, tuple[datetime, int, DagRun]] = {}
        with self._lock:
            for key, run in self._runs.items():
                if run.dag_id in wanted:
                    rank = (run.logical_date, self._run_order[key], run)
                    if run.dag_id not in newest or rank[:2] > newest[run.dag_id][:2]:
                        newest[run.dag_id] = rank
        return {dag_id: item[2] for dag_id, item in newest.items()}

    def count_active_runs(self, dag_id: str) -> int:
        with self._lock:
            return sum(
                1 for r in self._runs.values() if r.dag_id == dag_id and r.state is RunState.RUNNING
            )

    # --- task instances -------------------------------------------------------------
    def get_task_instance(self, key: TaskKey) -> TaskInstance:
        with self._lock:
            ti = self._tis.get((key.dag_id, key.run_id), {}).get(key.task_id)
        if ti is None:
            raise task_not_found(key)
        return ti

    def query_task_instances(self, query: TaskInstanceQuery) -> Page[TaskInstance]:
        with self._lock:
            runs = sorted(self._tis.items(), key=lambda item: -self._run_order[item[0]])
            found = [
                ti
                for (dag_id, run_id), tis in runs
                if (query.dag_id is None or dag_id == query.dag_id)
                and (query.run_id is None or run_id == query.run_id)
                for ti in tis.values()
                if (query.task_id is None or ti.task_id == query.task_id)
                and (not query.states or ti.state in query.states)
            ]
        return Page(
            found[query.offset : query.offset + query.limit], len(found), query.limit, query.offset
        )

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        with self._lock:
            now = self.clock()
            staged: dict[TaskKey, TaskInstance] = {}
            items, results = [], []
            for change in changes:
                before = staged.get(change.key) or self.get_task_instance(change.key)
                after = staged[change.key] = apply_task_change(before, change, now)
                payload = task_event_payload(before, after, now, change.reason)
                items.append(
                    ("task.state_changed", payload, after.dag_id, after.run_id, after.task_id)
                )
                results.append(after)
            for after in staged.values():
                self._tis[(after.dag_id, after.run_id)][after.task_id] = after
            events = self._emit(items)
        self._publish(events)
        return results

    def pool_usage(self) -> Mapping[str, Mapping[TaskState, int]]:
        usage: dict[str, dict[TaskState, int]] = {}
        with self._lock:
            for tis in self._tis.values():
                for ti in tis.values():
                    if ti.state in (TaskState.RUNNING, TaskState.QUEUED):
                        counts = usage.setdefault(ti.pool, {})
                        counts[ti.state] = counts.get(ti.state, 0) + 1
        return usage

    # --- XCom -----------------------------------------------------------------------
    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> XComEntry:
        text = to_json(value, f"XCom value '{xcom_key}'")
        entry = XComEntry(
            key.dag_id,
            key.run_id,
            key.task_id,
            xcom_key,
            json.loads(text),
            len(text.encode()),
            self.clock(),
        )
        with self._lock:
            self.get_task_instance(key)
            self._xcom.setdefault(key, {})[xcom_key] = entry
        return entry

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None:
        with self._lock:
            return self._xcom.get(key, {}).get(xcom_key)

    def list_xcom(self, key: TaskKey) -> list[XComEntry]:
        with self._lock:
            return [e for _, e in sorted(self._xcom.get(key, {}).items())]

    def list_run_xcom(self, dag_id: str, run_id: str) -> list[XComEntry]:
        with self._lock:
            entries = [
                entry
                for key, by_key in self._xcom.items()
                if (key.dag_id, key.run_id) == (dag_id, run_id)
                for entry in by_key.values()
            ]
        return sorted(entries, key=lambda e: (e.timestamp, e.task_id, e.key))

    def delete_xcom(self, key: TaskKey, xcom_key: str | None = None) -> int:
        with self._lock:
            entries = self._xcom.get(key, {})
            if xcom_key is None:
                count = len(entries)
                self._xcom.pop(key, None)
                return count
            return 1 if entries.pop(xcom_key, None) is not None else 0

    # --- pools ----------------------------------------------------------------------
    def create_pool(self, pool: Pool) -> Pool:
        with self._lock:
            if pool.name in self._pools:
                raise Conflict(f"pool '{pool.name}' already exists")
            self._pools[pool.name] = pool
            events = self._emit([pool_event(pool, "created")])
        self._publish(events)
        return pool

    def get_pool(self, name: str) -> Pool:
        with self._lock:
            if name not in self._pools:
                raise NotFound(f"no pool '{name}'")
            return self._pools[name]

    def list_pools(self) -> list[Pool]:
        with self._lock:
            return [p for _, p in sorted(self._pools.items())]

    def update_pool(
        self, name: str, *, slots: int | None = None, description: str | None = None
    ) -> Pool:
        with self._lock:
            current = self.get_pool(name)
            updated = Pool(
                name,
                current.slots if slots is None else slots,
                current.description if description is None else description,
            )
            if updated == current:
                return current
            self._pools[name] = updated
            events = self._emit([pool_event(updated, "updated")])
        self._publish(events)
        return updated

    def delete_pool(self, name: str) -> None:
        if name == "default_pool":
            raise Conflict("default_pool cannot be deleted")
        with self._lock:
            pool = self.get_pool(name)
            del self._pools[name]
            events = self._emit([pool_event(pool, "deleted")])
        self._publish(events)

    # --- logs -----------------------------------------------------------------------
    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        if not text:
            return
        with self._lock:
            log = self._logs.setdefault((key, try_number), _Log(bytearray()))
            if log.truncated:
                return
            kept, log.truncated = clip_log(text, len(log.data), self.log_cap_bytes)
            log.data.extend(kept.encode("utf-8"))

    def read_log(
        self, key: TaskKey, try_number: int, *, offset: int = 0, limit: int | None = None
    ) -> LogChunk:
        with self._lock:
            log = self._logs.get((key, try_number))
            if log is None:
                self.get_task_instance(key)
                return LogChunk("", offset, offset, 0, False)
            data = bytes(log.data)
            truncated = log.truncated
        end = len(data) if limit is None else min(len(data), offset + limit)
        start = min(offset, len(data))
        return LogChunk(
            data[start:end].decode("utf-8", errors="replace"),
            start,
            max(start, end),
            len(data),
            truncated,
        )

    # --- heartbeats -----------------------------------------------------------------
    def heartbeat(self, component_id: str, *, kind: str, hostname: str, pid: int) -> Heartbeat:
        beat = Heartbeat(component_id, kind, hostname, pid, self.clock())
        with self._lock:
            self._heartbeats[component_id] = beat
        return beat

    def list_heartbeats(self, kind: str | None = None) -> list[Heartbeat]:
        with self._lock:
            return [
                b for _, b in sorted(self._heartbeats.items()) if kind is None or b.kind == kind
            ]

    def release_heartbeat(self, component_id: str) -> None:
        with self._lock:
            self._heartbeats.pop(component_id, None)

    # --- event log ------------------------------------------------------------------
    def append_event(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> Event:
        to_json(payload, "event payload")
        with self._lock:
            events = self._emit([(type, payload, dag_id, run_id, task_id)])
        self._publish(events)
        return events[0]

    def read_events(self, query: EventQuery) -> list[Event]:
        with self._lock:
            found = []
            for event in self._events:
                if event.seq <= query.after_seq or not _event_matches(event, query):
                    continue
                found.append(event)
                if len(found) >= query.limit:
                    break
            return found

    def event_bounds(self) -> tuple[int, int]:
        with self._lock:
            if not self._last_seq:
                return (0, 0)
            first = self._events[0].seq if self._events else self._last_seq + 1
            return (first, self._last_seq)

    def trim_events(self, before_seq: int) -> int:
        with self._lock:
            kept = [e for e in self._events if e.seq >= before_seq]
            count = len(self._events) - len(kept)
            self._events = kept
            return count

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._last_seq > after_seq, timeout)


def _in_window(run: DagRun, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or run.logical_date >= since) and (
        until is None or run.logical_date <= until
    )


def _run_matches(run: DagRun, q: RunQuery) -> bool:
    if q.dag_id is not None and run.dag_id != q.dag_id:
        return False
    if q.states and run.state not in q.states:
        return False
    if q.run_types and run.run_type not in q.run_types:
        return False
    for field in ("logical_date", "start_date", "end_date"):
        value = getattr(run, field)
        low, high = getattr(q, f"{field}_gte"), getattr(q, f"{field}_lte")
        if (low is not None or high is not None) and value is None:
            return False
        if (low is not None and value < low) or (high is not None and value > high):
            return False
    return True


def _run_sort_value(run: DagRun, field: str) -> Any:
    if field == "duration":
        return run.duration_ms
    value = getattr(run, field)
    return value.value if isinstance(value, RunState) else value


def _event_matches(event: Event, q: EventQuery) -> bool:
    return (
        (q.dag_id is None or event.dag_id == q.dag_id)
        and (q.run_id is None or event.run_id == q.run_id)
        and (q.task_id is None or event.task_id == q.task_id)
        and (not q.types or event.type in q.types)
    )
