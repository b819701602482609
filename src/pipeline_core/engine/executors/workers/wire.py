"""What crosses the boundary between the engine and its worker processes.

DAGs and runs travel pickled, with two substitutions: a function becomes a ``CallableRef``
(module, qualified name and the file of its module) that the worker resolves when the task
runs, so functions defined in a DAG file work although that file is not an importable module;
and the model's read-only mappings travel as plain dicts that are frozen again on arrival.
Messages are tuples whose first item names them; ``multiprocessing.connection`` frames them.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.bag import SOURCE_ATTRIBUTE
from pipeline_core.dag.packed import frozen, reduce_proxy
from pipeline_core.engine.tasks.callables import CallableRef

#: DAG versions a worker keeps; it forgets the oldest first, and the engine mirrors that.
KEEP_DAGS = 64
#: The largest message on the zygote's control socket (small JSON objects).
CONTROL_MESSAGE_BYTES = 64 * 1024

# Messages from the engine to a worker.
DAG = "dag"  # (DAG, token, pickled DAG, sys.path): a definition later jobs refer to by token
RUN = "run"  # WireJob.to_message()
# Messages from a worker to the engine.
READY = "ready"  # (READY, pid)
LOG = "log"  # (LOG, text): timestamped log lines of the current try
SET_XCOM = "set_xcom"  # (SET_XCOM, key, value)
# (GET_XCOM, task_id, key, mapped) -> the engine answers (entry,) or (None,); ``mapped``
# asks for the values of a mapped task's instances as one list
GET_XCOM = "get_xcom"
# (GET_CREDENTIAL, "variable" | "connection", name) -> the engine answers (value, None) or
# (None, why it is missing)
GET_CREDENTIAL = "get_credential"
METRIC = "metric"  # (METRIC, "counter" | "gauge" | "histogram", name, value, labels)
DONE = "done"  # (DONE, outcome, error, follow, poke_ok)


@dataclass(frozen=True, slots=True)
class WireJob:
    """One try as a worker receives it. The DAG comes separately, once per worker and DAG
    version; the run comes pickled once per run version (a frozen dataclass pickles slowly,
    bytes do not)."""

    dag_token: int
    task_id: str
    run_bytes: bytes
    try_number: int
    xcom_max_bytes: int
    map_index: int = -1
    map_values: dict[str, Any] | None = None

    def to_message(self) -> tuple[Any, ...]:
        return (RUN, self.dag_token, self.task_id, self.run_bytes, self.try_number,
                self.xcom_max_bytes, self.map_index, self.map_values)  # fmt: skip

    @classmethod
    def from_message(cls, message: tuple[Any, ...]) -> WireJob:
        return cls(*message[1:])


def dumps(message: tuple[Any, ...]) -> bytes:
    """A message of plain values (runs, XCom, log text): the C pickler's fast path."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def dumps_definition(value: Any) -> bytes:
    """Pickle a DAG: functions as ``CallableRef``, mapping proxies as dicts (slower than
    ``dumps``; done once per DAG version)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and obj is not frozen:
            module = sys.modules.get(obj.__module__)
            fileloc = getattr(module, "__file__", None)
            source = getattr(module, SOURCE_ATTRIBUTE, None)
            return CallableRef, (obj.__module__, obj.__qualname__, fileloc, source)
        if isinstance(obj, types.MappingProxyType):
            return reduce_proxy(obj)
        return NotImplemented
