"""``{{ ... }}`` templates in task settings: parsing, validation of references, rendering.

Templates are kept verbatim in the model; the engine renders them just before a task runs.
Only plain references are allowed (no code): ``xcom.<task>.<key>[.<nested>...]``,
``dag_run.conf.<key>[...]``, ``run_id``, ``ds``, ``logical_date``, ``ts``, ``dag_id``,
``task_id`` and ``try_number``; in a mapped task also ``map.<key>[...]`` (the instance's
value of an ``expand`` key) and ``map_index``; and the shared settings ``var.<key>[...]``
(a variable, then a path inside its value) and ``conn.<id>.<field>`` (``conn_type``, ``host``,
``port``, ``login``, ``password``, ``schema``, ``extra.<name>`` or ``uri``). Variable keys and
connection ids may contain dots: the longest key that exists wins.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

SCALAR_ROOTS = frozenset(
    {"run_id", "ds", "ts", "logical_date", "dag_id", "task_id", "try_number", "map_index"}
)
#: The references only a mapped task's instances can resolve.
MAPPED_ROOTS = frozenset({"map", "map_index"})
TEMPLATE_PATTERN = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_REFERENCE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


class TemplateError(ValueError):
    """A template is malformed or names something that does not exist."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed ``{{ a.b.c }}``: ``text`` is the inner text, ``parts`` its dotted segments."""

    text: str
    parts: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.parts[0]

    def xcom_task(self, task_ids: Collection[str]) -> tuple[str, tuple[str, ...]]:
        """For an ``xcom.`` reference: the task id (task ids may contain dots) and the key path.

        Raises ``TemplateError`` when no known task matches.
        """
        rest = self.parts[1:]
        for cut in range(len(rest) - 1, 0, -1):
            candidate = ".".join(rest[:cut])
            if candidate in task_ids:
                return candidate, rest[cut:]
        raise TemplateError(f"template '{{{{ {self.text} }}}}' names unknown task {rest[0]!r}")


def parse_reference(inner: str) -> Reference:
    """Parse the text between ``{{`` and ``}}``; raise ``TemplateError`` if it is not allowed."""
    text = inner.strip()
    if not text:
        raise TemplateError("empty template '{{ }}'")
    if not _REFERENCE.fullmatch(text):
        raise TemplateError(
            f"template '{{{{ {text} }}}}' is not a plain reference such as xcom.<task>.<key>"
        )
    parts = tuple(text.split("."))
    root = parts[0]
    if root == "xcom":
        if len(parts) < 3:
            raise TemplateError(f"template '{{{{ {text} }}}}' needs xcom.<task>.<key>")
    elif root == "dag_run":
        if len(parts) < 3 or parts[1] != "conf":
            raise TemplateError(f"template '{{{{ {text} }}}}' needs dag_run.conf.<key>")
    elif root == "conn":
        if len(parts) < 3 or not connection_field(parts):
            raise TemplateError(
                f"template '{{{{ {text} }}}}' needs conn.<id>.<field> with a field of "
                "conn_type, host, port, login, password, schema, extra.<name> or uri"
            )
    elif root in ("map", "payload", "var"):
        if len(parts) < 2:
            raise TemplateError(f"template '{{{{ {text} }}}}' needs {root}.<key>")
    elif root in SCALAR_ROOTS:
        if len(parts) > 1:
            raise TemplateError(f"template '{{{{ {text} }}}}': {root} has no fields")
    else:
        allowed = ", ".join(sorted({"xcom", "dag_run", "map", "payload", "var", "conn",
                                    *SCALAR_ROOTS}))  # fmt: skip
        raise TemplateError(
            f"template '{{{{ {text} }}}}' has unknown name {root!r} (use {allowed})"
        )
    return Reference(text, parts)


CONNECTION_FIELDS = frozenset(
    {"conn_type", "host", "port", "login", "password", "schema", "extra", "uri"}
)


def connection_field(parts: tuple[str, ...]) -> tuple[str, ...]:
    """The field path of a ``conn.<id>.<field>`` reference (``("extra", name)`` or one
    field), or ``()`` when it names none."""
    if len(parts) >= 4 and parts[-2] == "extra":
        return parts[-2:]
    if parts[-1] in CONNECTION_FIELDS - {"extra"}:
        return parts[-1:]
    return ()


@functools.lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[str | Reference, ...]:
    """``text`` as literal pieces and references, in order: the one parser that validation
    and rendering share. ``TemplateError`` for a malformed reference or a stray ``{{``.
    Remembered for the texts seen most recently (a key rendered for every try)."""
    pieces: list[str | Reference] = []
    end = 0
    for match in TEMPLATE_PATTERN.finditer(text):
        if match.start() > end:
            pieces.append(text[end : match.start()])
        pieces.append(parse_reference(match.group(1)))
        end = match.end()
    tail = text[end:]
    if "{{" in tail or any(isinstance(p, str) and "{{" in p for p in pieces):
        raise TemplateError(f"unterminated template in {text!r}")
    if tail:
        pieces.append(tail)
    return tuple(pieces)


def find_references(text: str) -> Iterator[Reference]:
    """Every reference in ``text``; ``TemplateError`` for a malformed one or a stray ``{{``."""
    for piece in parse_template(text):
        if isinstance(piece, Reference):
            yield piece


def iter_strings(value: Any) -> Iterator[tuple[str, str]]:
    """``(relative path, string)`` for every string inside nested dicts and lists."""
    if isinstance(value, str):
        yield "", value
    elif isinstance(value, dict):
        for key, item in value.items():
            for path, text in iter_strings(item):
                yield f".{key}{path}", text
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            for path, text in iter_strings(item):
                yield f"[{index}]{path}", text


def render(text: str, resolve: Callable[[Reference], Any]) -> Any:
    """Substitute every template in ``text`` using ``resolve``.

    A string that is exactly one template (surrounding blanks aside) yields the referenced
    value itself (a dict stays a dict); otherwise values are interpolated, non-strings as JSON.
    """
    pieces = parse_template(text.strip())
    if len(pieces) == 1 and isinstance(pieces[0], Reference):
        return resolve(pieces[0])
    pieces = parse_template(text)
    rendered = []
    for piece in pieces:
        if isinstance(piece, str):
            rendered.append(piece)
        else:
            value = resolve(piece)
            rendered.append(value if isinstance(value, str) else json.dumps(value))
    return "".join(rendered)
