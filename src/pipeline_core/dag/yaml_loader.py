"""Load DAGs from YAML files (``yaml.safe_load`` semantics, with line numbers for errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline_core._gc import gc_paused
from pipeline_core.dag.model import DAG
from pipeline_core.dag.spec import Keys, dag_from_spec
from pipeline_core.errors import DagValidationError, Issue

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Bound on the document's size with every alias expanded (guards against "billion laughs").
MAX_EXPANDED_NODES = 5_000_000
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """A safe loader that reports duplicate mapping keys instead of silently keeping the last,
    and leaves dates as strings so that the DAG parser reports bad ones with their field."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []
        self._scalar_tags: dict[tuple[str, Any], str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        # Tag resolution runs a regex scan per scalar; DAG files repeat the same keys and
        # values thousands of times, so remember the answer per (value, implicit) pair.
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        key = (value, implicit)
        tag = self._scalar_tags.get(key)
        if tag is None:
            tag = self._scalar_tags[key] = super().resolve(kind, value, implicit)
        return tag

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, str(key)))
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def load_dag_text(
    text: str, *, filename: str | None = None, default_dag_id: str | None = None
) -> DAG:
    """Parse one YAML DAG document; raise ``DagValidationError`` listing every problem."""
    if len(text) > MAX_DOCUMENT_BYTES:
        message = f"file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB"
        raise DagValidationError([Issue(message, "", filename)])
    with gc_paused():
        node, data, duplicates = _parse(text, filename)
        return dag_from_spec(
            data,
            default_dag_id=default_dag_id,
            fileloc=filename,
            line_of=lambda keys: line_of(node, keys),
            extra_issues=duplicates,
        )


def _parse(text: str, filename: str | None) -> tuple[yaml.Node | None, Any, list[Issue]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        has_anchors = "&" in text  # aliases need an anchor; most files have none
        if node is not None and has_anchors and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            message = "document expands to too many nodes (aliases nested too deeply)"
            raise DagValidationError([Issue(message, "", filename)])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise DagValidationError([Issue(f"invalid YAML: {problem}", "", filename, line)]) from None
    finally:
        loader.dispose()
    message = "duplicate key '{}' (a later value would silently replace the first)"
    duplicates = [Issue(message.format(key), "", filename, line) for line, key in loader.duplicates]
    return node, data, duplicates


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the document has once aliases are expanded (linear: memoised per node)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a recursive alias counts once instead of looping forever
    size = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, memo) + _expanded_size(value_node, memo)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo)
    memo[id(node)] = size
    return size


def load_dag_file(path: str | Path) -> DAG:
    """Load a YAML DAG file; its ``dag_id`` defaults to the file name without extension."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DagValidationError([Issue(f"cannot read file: {exc}", "", str(path))]) from None
    return load_dag_text(text, filename=str(path), default_dag_id=path.stem)


def line_of(root: yaml.Node | None, keys: Keys) -> int | None:
    """The 1-based line of the deepest node along ``keys`` that exists in the document."""
    node, line = root, None
    for key in keys:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, key)
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return value_node  # type: ignore[no-any-return]
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]  # type: ignore[no-any-return]
    return None
