"""Tasks kept packed: a DAG's tasks are most of its memory (about 5 KB for ten tasks, as
objects), and a deployment with thousands of DAGs runs few of them at a time.

``pack(dag)`` keeps a DAG's tasks as pickled bytes from then on. Reading ``dag.tasks``
decodes them again when needed; at most ``DECODED_MAX`` packed DAGs hold their decoded
tasks at once, and the one read least recently gives them back. The engine reads a DAG at
every decision about its runs, and the scheduler when a schedule falls due, so what is
active stays decoded while a DAG nothing needs costs its bytes (about a third of that).
A DAG that was never packed holds its tasks like any other field. Nothing here performs I/O.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline_core.dag.model import DAG, Task

#: Packed DAGs whose decoded tasks are held at once.
DECODED_MAX = 256
_TASKS, _PACKED, _BY_ID = "_tasks", "_packed", "task_dict"


def frozen(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    """A read-only mapping again, as unpickled."""
    return types.MappingProxyType(items)


def reduce_proxy(proxy: types.MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    """How the read-only mappings DAGs and tasks hold (``MappingProxyType``, which pickle
    refuses) are pickled: as what they wrap, frozen again on arrival."""
    return frozen, (dict(proxy),)


#: How pickling here reduces what it meets: as usual, and read-only mappings by
#: ``reduce_proxy``. A table, not ``reducer_override``: the pickler looks types up in it
#: without calling back into Python for every object.
_REDUCERS = {**copyreg.dispatch_table, types.MappingProxyType: reduce_proxy}


def dumps(value: object) -> bytes:
    """``value`` pickled, its read-only mappings too (raises what pickling it raises)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(value)
    return buffer.getvalue()


class _Decoded:
    """The packed DAGs holding their decoded tasks, least recently read first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._order: OrderedDict[int, DAG] = OrderedDict()

    def read(self, dag: DAG) -> None:
        with self._lock:
            self._order[id(dag)] = dag
            self._order.move_to_end(id(dag))
            while len(self._order) > self.size:
                _, old = self._order.popitem(last=False)
                state = vars(old)
                if _PACKED in state:  # a reader already holding them keeps its reference
                    state.pop(_TASKS, None)
                    state.pop(_BY_ID, None)

    def drop(self, dag: DAG) -> None:
        with self._lock:
            self._order.pop(id(dag), None)

    def count(self) -> int:
        with self._lock:
            return len(self._order)


DECODED = _Decoded(DECODED_MAX)


class PackedTasks:
    """The ``tasks`` field of ``DAG``: a tuple to read and to set, decoded on demand once
    the DAG is packed."""

    def __get__(self, dag: DAG | None, owner: type | None = None) -> tuple[Task, ...]:
        if dag is None:
            return ()  # the field's default
        state = vars(dag)
        tasks: tuple[Task, ...] | None = state.get(_TASKS)
        if tasks is None:
            tasks = state[_TASKS] = pickle.loads(state[_PACKED])
        if _PACKED in state:
            DECODED.read(dag)
        return tasks

    def __set__(self, dag: DAG, tasks: Iterable[Task]) -> None:
        state = vars(dag)
        state[_TASKS] = tuple(tasks)
        state.pop(_PACKED, None)


def pickled(state: dict[str, Any]) -> dict[str, Any]:
    """What of a DAG's ``state`` is pickled: a packed DAG's bytes without its decoded tasks,
    so that it comes back packed (and is counted when it is read)."""
    if _PACKED not in state:
        return state
    return {name: value for name, value in state.items() if name not in (_TASKS, _BY_ID)}


def pack(dag: DAG) -> bool:
    """Keep ``dag``'s tasks as bytes from now on, decoded only while read (see the module
    docstring). False, and the DAG stays as it was, when they cannot be pickled (the
    functions of a Python DAG file, say)."""
    state = vars(dag)
    if _PACKED in state:
        return True
    try:
        packed = dumps(state[_TASKS])
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    state[_PACKED] = packed
    state.pop(_TASKS, None)
    state.pop(_BY_ID, None)
    DECODED.drop(dag)
    return True


def is_decoded(dag: DAG) -> bool:
    """Whether ``dag`` holds its tasks decoded now."""
    return _TASKS in vars(dag)
