"""The checks a request passes before its route's handler runs, made from the route's
``Operation`` — the same declaration the OpenAPI document is written from.

Path, query and header parameters are read by their schema's type (query values arrive as
text) and validated; a query parameter the operation does not declare is refused, never
ignored. The JSON body is validated against the body schema (``jsonschema``, draft 2020-12),
with date-times checked by the one rule the rest of the system uses (``parse_datetime``).
What passes is handed to the handler typed: ``request.args`` (parameters by name, a
date-time as a ``datetime``) and
``request.fields`` (the body's fields). What fails is a 400 naming the parameter or field
and the rule it breaks, with no more of the value than it takes to recognise it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError, best_match

from pipeline_core.api.http import Request, bad_request
from pipeline_core.api.openapi.operation import Operation, Param
from pipeline_core.dag.model import parse_datetime

FORMATS = FormatChecker(())
#: How many valid values of one parameter are remembered.
VALID_KEPT = 4096
_UNSEEN = object()
_INTEGER = re.compile(r"-?[0-9]{1,16}")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterable[ValidationError]:
    """``pattern`` as ECMA-262 reads it: a final ``$`` ends the text (Python's would also
    match before a final newline, letting ``"name\\n"`` pass for ``"name"``)."""
    if isinstance(instance, str):
        compiled = _compiled(pattern)
        if not compiled.search(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        ending = (
            pattern[:-1] + r"\Z"
            if pattern.endswith("$") and not pattern.endswith(r"\$")
            else pattern
        )
        compiled = _PATTERNS[pattern] = re.compile(ending)
    return compiled


Validator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _pattern}
)


@FORMATS.checks("date-time", raises=ValueError)
@FORMATS.checks("date", raises=ValueError)
def _moment(value: object) -> bool:
    if isinstance(value, str):
        parse_datetime(value)
    return True


class RequestChecks:
    """Validates a request against one operation; call it with the matched request."""

    def __init__(self, operation: Operation) -> None:
        self._params = {
            (p.where, p.name): (p, Validator(dict(p.schema), format_checker=FORMATS))
            for p in operation.params
        }
        self._query = {name for where, name in self._params if where == "query"}
        #: Values already read and found valid, per parameter: a rule is a pure function of
        #: the text, and most requests repeat the ids and pages of recent ones.
        self._valid: dict[tuple[str, str], dict[tuple[str, ...], Any]] = {
            key: {} for key in self._params
        }
        self._body = (
            Validator(dict(operation.body), format_checker=FORMATS)
            if operation.body is not None
            else None
        )

    def __call__(self, request: Request) -> None:
        unknown = sorted(set(request.query) - self._query)
        if unknown:
            raise bad_request(
                f"unknown query parameter(s): {', '.join(unknown)}", parameters=unknown
            )
        args: dict[str, Any] = {}
        for (where, name), (param, validator) in self._params.items():
            given = tuple(_given(request, where, name))
            if not given:
                continue
            valid = self._valid[where, name]
            value = valid.get(given, _UNSEEN)
            if value is _UNSEEN:
                value = _checked(param, validator, given)
                if len(valid) >= VALID_KEPT:
                    valid.clear()
                valid[given] = value
            args[name] = value
        request.args = args
        if self._body is not None:
            fields = request.json if request.body else {}
            _check(self._body, fields, "the body", "")
            request.fields = fields


def _given(request: Request, where: str, name: str) -> list[str]:
    if where == "path":
        return [request.params[name]]
    if where == "header":
        value = request.header(name)
        return [] if value is None else [value]
    return request.query.get(name, [])


def _checked(param: Param, validator: Any, given: Sequence[str]) -> Any:
    """A parameter's value read by its schema's type, then validated."""
    schema = param.schema
    if schema.get("type") == "array":
        items = schema.get("items", {})
        # An empty item (``?state=``, ``a,,b``) is an item, checked as any other: a list
        # the schema refuses is refused, not read as no filter at all.
        value: Any = [_read(items, part, param.name) for text in given for part in text.split(",")]
    else:
        value = _read(schema, given[-1], param.name)
    _check(validator, value, f"'{param.name}'", param.name, query=True)
    if schema.get("format") == "date-time":
        return parse_datetime(value)  # valid, as the format check found
    return value


def _read(schema: Mapping[str, Any], text: str, name: str) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise bad_request(f"'{name}' must be {_range(schema)}, got {_short(text)}")
        return int(text)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise bad_request(f"'{name}' must be {_range(schema)}, got {_short(text)}")
        return number
    if kind == "boolean":
        if text.lower() not in (*_TRUE, *_FALSE):
            raise bad_request(f"'{name}' must be true or false, got {_short(text)}")
        return text.lower() in _TRUE
    return text


def _check(validator: Any, value: Any, whole: str, name: str, *, query: bool = False) -> None:
    """400 for the first field (in the schema's order) that breaks a rule, naming it; a
    parameter is named as a whole (``'state'``, not an item of it)."""
    errors = list(validator.iter_errors(value))
    if not errors:
        return
    order = list(validator.schema.get("properties", {}))
    first = min(errors, key=lambda e: _rank(order, e))
    error = best_match(e for e in errors if _rank(order, e) == _rank(order, first))
    place = name if query else _place(name, error.absolute_path)
    message, details = explain(error, f"'{place}'" if place else whole)
    raise bad_request(message, **({"field": place} if place else {}), **details)


def _rank(order: list[str], error: ValidationError) -> int:
    top = error.absolute_path[0] if error.absolute_path else None
    return order.index(top) if top in order else -1


def _place(name: str, path: Iterable[str | int]) -> str:
    place = name
    for step in path:
        place += f"[{step}]" if isinstance(step, int) else (f".{step}" if place else step)
    return place


def explain(error: ValidationError, named: str) -> tuple[str, dict[str, Any]]:
    """A specific message for what ``error`` found in the value called ``named``."""
    schema, keyword = error.schema, error.validator
    value: Any = error.instance
    assert isinstance(schema, dict)
    if keyword == "required":
        missing = [n for n in schema["required"] if n not in value]
        return f"{named} needs {_names(missing)}", {"fields": missing}
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        message = f"unknown field(s) {', '.join(unknown)} in {named}; allowed: {', '.join(allowed)}"
        return message, {"fields": unknown}
    if keyword in ("oneOf", "anyOf") and all("title" in s for s in schema[keyword]):
        forms_of = schema[keyword]
        chosen = [  # the form whose required fields the value has: what is wrong with it
            e
            for e in error.context or ()
            if isinstance(value, dict)
            and e.validator != "required"
            and all(k in value for k in forms_of[e.relative_schema_path[0]].get("required", ()))
        ]
        if chosen:
            return explain(chosen[0], named)
        forms = " or ".join(s["title"] for s in schema[keyword])
        return f"{named} must be one of its forms: {forms}", {}
    if keyword == "minProperties":
        return f"{named} needs at least one of {_names(list(schema['properties']))}", {}
    if keyword == "type":
        return f"{named} must be {_kinds(schema['type'])}, got {_kind(value)}", {}
    if keyword in ("enum", "const"):
        options = schema["enum"] if "enum" in schema else [schema["const"]]
        shown = ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in options)
        return f"{named} must be one of {shown}, got {_short(value)}", {}
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{named} must be {_range(schema)}, got {_short(value)}", {}
    if keyword in ("minLength", "maxLength"):
        most = schema.get("maxLength")
        return f"{named} must be a string of at most {most} characters", {}
    if keyword in ("minItems", "maxItems"):
        return f"{named} must hold at most {schema.get('maxItems')} items", {}
    if keyword == "pattern":
        rule = schema.get("description") or f"text matching {schema['pattern']}"
        return f"{named} must be {rule}, got {_short(value)}", {}
    if keyword == "format" and error.cause is not None:
        return f"{named}: {error.cause}", {}
    causes = [c.cause for c in error.context or () if c.cause is not None]
    if keyword == "anyOf" and causes:
        return f"{named}: {causes[0]}", {}
    if keyword == "anyOf" and schema.get("description"):
        return f"{named} must be {schema['description']}, got {_short(value)}", {}
    return f"{named}: {_short(error.message, 200)}", {}


def _names(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


_KINDS = {
    "object": "a JSON object",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _kinds(kinds: str | list[str]) -> str:
    return " or ".join(_KINDS[k] for k in ([kinds] if isinstance(kinds, str) else kinds))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else "a number"


def _range(schema: Mapping[str, Any]) -> str:
    """``a whole number from 1 to 1000``, ``a number above 0 and at most 3600``."""
    text = "a whole number" if schema.get("type") == "integer" else "a number"
    if "minimum" in schema:
        text += f" from {_number(schema['minimum'])}"
        return text + (f" to {_number(schema['maximum'])}" if "maximum" in schema else "")
    if "exclusiveMinimum" in schema:
        text += f" above {_number(schema['exclusiveMinimum'])}"
        if "maximum" in schema:
            text += " and"
    if "maximum" in schema:
        text += f" at most {_number(schema['maximum'])}"
    return text


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short(value: Any, most: int = 40) -> str:
    shown = repr(value) if not isinstance(value, bool) else str(value).lower()
    return shown if len(shown) <= most else shown[:most] + "…"
