"""The OpenAPI 3.1 document of the v1 API, written from the routes' declarations.

Every route of the API carries an ``Operation`` (its parameters, body, answers and
examples); this module only gathers them by path and method and adds what the whole API
shares: its description, tags, component schemas and security. The checks each request
passes are made from the same operations, so the document states every rule a route
enforces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pipeline_core._version import __version__
from pipeline_core.api.openapi.operation import Operation
from pipeline_core.api.openapi.parts import DESCRIPTION, TAGS
from pipeline_core.api.openapi.schemas import SCHEMAS


class Declared(Protocol):
    """A route as the document sees it."""

    @property
    def template(self) -> str: ...

    @property
    def methods(self) -> Iterable[str]: ...

    @property
    def operation(self) -> Operation | None: ...


def document(routes: Iterable[Declared]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.operation is None:
            continue
        for method in route.methods:
            paths.setdefault(route.template, {})[method.lower()] = route.operation.openapi(method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipeline-core REST API",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            "contact": {"name": "pipeline-core maintainers"},
        },
        "servers": [{"url": "/"}],
        "tags": TAGS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
