"""``/variables`` and ``/connections``: settings DAGs share, kept in the store — a secret
variable's value and a connection's password sealed at rest and answered masked (``***``):
reads never carry a secret, only writes take one. A write may name the version it expects
(``If-Match: "<version>"``); a concurrent one that came first makes it a 409."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, bad_request, envelope, listing
from pipeline_core.api.openapi.operation import PAGE, Operation, Param
from pipeline_core.api.openapi.parts import closed, envelope_of
from pipeline_core.api.openapi.schemas import obj
from pipeline_core.api.params import page
from pipeline_core.credentials.connections import Connection, ConnectionError_
from pipeline_core.credentials.masking import MASK
from pipeline_core.model import iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import Page, StoredConnection, Variable

KEY = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,250}$"}
TEXT = {"type": ["string", "null"], "maxLength": 10_000}
IF_MATCH = Param("If-Match", "header", {"type": "string", "pattern": r'^(W/)?"?[0-9]{1,18}"?$'},
                 'the version the write expects, as "<version>"')  # fmt: skip
VARIABLE = obj(["key", "value", "is_secret", "version"], key={"type": "string"}, value={},
               is_secret={"type": "boolean"}, description=TEXT, version={"type": "integer"},
               updated_at={"type": "string"})  # fmt: skip
CONNECTION = obj(["conn_id", "conn_type", "version"], conn_id={"type": "string"},
                 conn_type={"type": "string"}, host=TEXT, port={"type": ["integer", "null"]},
                 login=TEXT, password=TEXT, schema=TEXT, extra={"type": "object"},
                 description=TEXT, version={"type": "integer"},
                 updated_at={"type": "string"})  # fmt: skip

LIST_VARIABLES = Operation("list_variables", "variables", "List variables",
    "Variables in key order, a page at a time; a secret's value shows as ***.",
    envelope_of(VARIABLE, listing=True), PAGE, read=True, scope="none")  # fmt: skip
GET_VARIABLE = Operation("get_variable", "variables", "Get a variable",
    "One variable; a secret's value shows as ***.", envelope_of(VARIABLE),
    (Param("key", "path", KEY),), read=True, scope="none")  # fmt: skip
PUT_VARIABLE = Operation("put_variable", "variables", "Set a variable",
    "Create or replace a variable: any JSON value; `secret` (or a key naming a password, "
    "secret, token or key) seals it at rest and masks it in every answer.",
    envelope_of(VARIABLE), (Param("key", "path", KEY), IF_MATCH),
    body=closed(["value"], value={}, secret={"type": "boolean"}, description=TEXT),
    body_required=True,
    example={"value": {"region": "eu-west-1"}, "description": "where"},
    role="admin", scope="none")  # fmt: skip
DELETE_VARIABLE = Operation("delete_variable", "variables", "Delete a variable",
    "Delete a variable.", envelope_of(obj(key={"type": "string"}, deleted={"type": "boolean"})),
    (Param("key", "path", KEY),), role="admin", scope="none")  # fmt: skip
LIST_CONNECTIONS = Operation("list_connections", "connections", "List connections",
    "Connections in id order, a page at a time; passwords show as ***.",
    envelope_of(CONNECTION, listing=True), PAGE, read=True, scope="none")  # fmt: skip
GET_CONNECTION = Operation("get_connection", "connections", "Get a connection",
    "One connection; its password shows as ***.", envelope_of(CONNECTION),
    (Param("conn_id", "path", KEY),), read=True, scope="none")  # fmt: skip
URI_FORM = {
    "title": "{uri} alone (and a description)",
    **closed(["uri"], uri={"type": "string", "maxLength": 4000,
                           "pattern": r"^[A-Za-z][A-Za-z0-9+.\-_]{0,63}://"},
             description=TEXT),
}  # fmt: skip
FIELDS_FORM = {
    "title": "fields with conn_type (no uri)",
    **closed(["conn_type"],
             conn_type={"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.\-_]{0,63}$"},
             host=TEXT, port={"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
             login=TEXT, password=TEXT, schema=TEXT, extra={"type": "object"},
             description=TEXT),
}  # fmt: skip
PUT_CONNECTION = Operation("put_connection", "connections", "Set a connection",
    "Create or replace a connection from its fields, or from a URI "
    "(postgresql://login:password@host:5432/schema?extra=value). Its password is sealed at "
    "rest and never answered.",
    envelope_of(CONNECTION), (Param("conn_id", "path", KEY), IF_MATCH),
    body={"oneOf": [URI_FORM, FIELDS_FORM]},
    body_required=True, example={"uri": "postgresql://etl:pw@db:5432/warehouse"},
    role="admin", scope="none")  # fmt: skip
DELETE_CONNECTION = Operation("delete_connection", "connections", "Delete a connection",
    "Delete a connection.",
    envelope_of(obj(conn_id={"type": "string"}, deleted={"type": "boolean"})),
    (Param("conn_id", "path", KEY),), role="admin", scope="none")  # fmt: skip


def variable_dict(variable: Variable) -> dict[str, Any]:
    return {"key": variable.key, "value": MASK if variable.is_secret else variable.value,
            "is_secret": variable.is_secret, "description": variable.description,
            "version": variable.version, "updated_at": iso(variable.updated_at)}  # fmt: skip


def connection_dict(stored: StoredConnection) -> dict[str, Any]:
    c = stored.connection
    return {"conn_id": c.conn_id, "conn_type": c.conn_type, "host": c.host, "port": c.port,
            "login": c.login, "password": None if c.password is None else MASK,
            "schema": c.schema, "extra": dict(c.extra), "description": stored.description,
            "version": stored.version, "updated_at": iso(stored.updated_at)}  # fmt: skip


def _expected(request: Request) -> int | None:
    given = request.args.get("If-Match")
    if given is None:
        return None
    text = given.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise bad_request(f'If-Match must be a version such as "3", got {given!r:.40}')
    return int(text)


Handle = Callable[[Request], Response]


def _lister(method: str, shown: Callable[[Any], dict[str, Any]]) -> Callable[[Store], Handle]:
    """A page of one kind (``store.credentials.<method>``), each ``shown``."""

    def make(store: Store) -> Handle:
        pages: Callable[..., Page[Any]] = getattr(store.credentials, method)

        def handle(request: Request) -> Response:
            limit, offset = page(request)
            found = pages(limit=limit, offset=offset)
            return listing([shown(x) for x in found.items], found.total, limit, offset)

        return handle

    return make


def _getter(param: str, method: str, shown: Callable[[Any], dict[str, Any]],
            ) -> Callable[[Store], Handle]:  # fmt: skip
    def make(store: Store) -> Handle:
        one: Callable[[str], Any] = getattr(store.credentials, method)

        def handle(request: Request) -> Response:
            return envelope(shown(one(request.params[param])))

        return handle

    return make


def _deleter(param: str, method: str) -> Callable[[Store], Handle]:
    def make(store: Store) -> Handle:
        delete: Callable[[str], None] = getattr(store.credentials, method)

        def handle(request: Request) -> Response:
            delete(request.params[param])
            return envelope({param: request.params[param], "deleted": True})

        return handle

    return make


list_variables = _lister("list_variables", variable_dict)
get_variable = _getter("key", "get_variable", variable_dict)
delete_variable = _deleter("key", "delete_variable")
list_connections = _lister("list_connections", connection_dict)
get_connection = _getter("conn_id", "get_connection", connection_dict)
delete_connection = _deleter("conn_id", "delete_connection")


def put_variable(store: Store) -> Handle:
    def handle(request: Request) -> Response:
        body = request.fields
        variable = store.credentials.set_variable(
            request.params["key"], body["value"], secret=body.get("secret"),
            description=body.get("description"), expected_version=_expected(request),
        )  # fmt: skip
        return envelope(variable_dict(variable), headers={"ETag": f'"{variable.version}"'})

    return handle


def put_connection(store: Store) -> Handle:
    """A uri alone, or fields with conn_type: the body's schema allows nothing else."""

    def handle(request: Request) -> Response:
        body, conn_id = request.fields, request.params["conn_id"]
        fields = {k: body[k] for k in ("host", "port", "login", "password", "schema", "extra")
                  if body.get(k) is not None}  # fmt: skip
        try:
            if "uri" in body:
                conn = Connection.from_uri(conn_id, body["uri"])
            else:
                conn = Connection(conn_id, body["conn_type"], **fields)
        except ConnectionError_ as exc:
            raise bad_request(str(exc)) from None
        stored = store.credentials.set_connection(
            conn, description=body.get("description"), expected_version=_expected(request)
        )
        return envelope(connection_dict(stored), headers={"ETag": f'"{stored.version}"'})

    return handle
