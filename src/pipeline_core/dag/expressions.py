"""Safe boolean conditions for branch tasks, e.g. ``{{ xcom.t.return_value.rows }} > 0``.

The expression is parsed with :mod:`ast` and checked against a whitelist — literals,
comparisons, ``in``/``not in``, ``and``/``or``/``not`` and template references — then
evaluated by walking the tree. Nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.templates import TEMPLATE_PATTERN, Reference, TemplateError, parse_reference

_PLACEHOLDER = "__ref{}__"
#: YAML spellings of the constants, accepted beside Python's True/False/None.
_NAMED_CONSTANTS = {"true": True, "false": False, "null": None}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class ExpressionError(ValueError):
    """A condition is malformed, uses something outside the whitelist, or cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed, checked condition; ``references`` are the templates it reads."""

    source: str
    references: tuple[Reference, ...]
    _tree: ast.Expression

    def evaluate(self, resolve: Callable[[Reference], Any]) -> bool:
        """Evaluate, reading templates through ``resolve``; ``ExpressionError`` on type errors."""
        values = [resolve(ref) for ref in self.references]
        try:
            return bool(_evaluate(self._tree.body, values))
        except TypeError as exc:
            raise ExpressionError(f"cannot evaluate {self.source!r}: {exc}") from None


def parse_condition(source: str) -> Condition:
    """Parse and check ``source``; raise ``ExpressionError`` naming what is not allowed."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("a condition must be a non-empty string")
    references: list[Reference] = []

    def placeholder(match: re.Match[str]) -> str:
        try:
            references.append(parse_reference(match.group(1)))
        except TemplateError as exc:
            raise ExpressionError(str(exc)) from None
        return _PLACEHOLDER.format(len(references) - 1)

    text = TEMPLATE_PATTERN.sub(placeholder, source.strip())
    if "{{" in text or "}}" in text:
        raise ExpressionError(f"unterminated template in condition {source!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid condition {source!r}: {exc.msg}") from None
    _check(tree.body, source, len(references))
    return Condition(source, tuple(references), tree)


def _check(node: ast.AST, source: str, n_refs: int) -> None:
    if isinstance(node, ast.Constant):
        return
    if isinstance(node, ast.Name):
        if node.id in _NAMED_CONSTANTS:
            return
        if node.id not in {_PLACEHOLDER.format(i) for i in range(n_refs)}:
            raise ExpressionError(
                f"condition {source!r} uses name {node.id!r}; "
                "refer to values with templates such as {{ xcom.task.return_value }}"
            )
        return
    children: list[ast.AST]
    if isinstance(node, ast.BoolOp):
        children = list(node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        children = [node.operand]
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        children = [node.left, *node.comparators]
    elif isinstance(node, ast.List | ast.Tuple):
        children = list(node.elts)
    else:
        raise ExpressionError(
            f"condition {source!r} uses {type(node).__name__}, which is not allowed "
            "(only literals, comparisons, in, and/or/not)"
        )
    for child in children:
        _check(child, source, n_refs)


def _evaluate(node: ast.AST, values: list[Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _NAMED_CONSTANTS:
            return _NAMED_CONSTANTS[node.id]
        return values[int(node.id.strip("_").removeprefix("ref"))]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(v, values) for v in node.values)
        return any(_evaluate(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(comparator, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(e, values) for e in node.elts]
    raise ExpressionError(f"unexpected {type(node).__name__}")  # unreachable after _check
