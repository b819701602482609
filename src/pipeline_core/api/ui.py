"""The dashboard's files: ``GET /`` redirects to ``/ui/``, and ``/ui/...`` serves the single
page from package data (``pipeline_core/ui/static``), from memory, on the event loop.

Every answer carries a strict Content-Security-Policy (scripts, styles, images and
connections from this origin only; no inline script or style), ``nosniff`` and no referrer.
Files are tagged with a hash of their bytes; ``index.html`` names the stylesheet, the entry
module and the icon with ``?v=<hash>``, and such a URL is cached for a year (``immutable``),
while the page itself and the modules it imports are revalidated (``no-cache`` with the
``ETag``, a 304 when unchanged). A path under ``/ui/`` that names no file is a view of the
page (``/ui/dags/etl``), so links can be shared and the back button works: it answers the
page. The files are public even when a token is configured; the page asks for the token.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from pipeline_core.api.http import Request, Response, bad_request, error_body

PREFIX = "/ui/"
#: How deep a view's path goes (``/ui/dags/D/runs/R``): a route is registered per depth.
MAX_DEPTH = 5
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
HASHED = ("app.css", "app.js", "favicon.svg")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class UIAssets:
    """The files, read and tagged once."""

    def __init__(self) -> None:
        files = dict(_walk(resources.files("pipeline_core") / "ui" / "static"))
        self.assets = {name: _asset(name, body) for name, body in files.items()}
        page = files["index.html"].decode()
        for name in HASHED:
            page = page.replace(f'"{PREFIX}{name}"', f'"{PREFIX}{name}?v={self.version(name)}"')
        self.page = _asset("index.html", page.encode())

    def version(self, name: str) -> str:
        return self.assets[name].etag.strip('"')[:16]

    def answer(self, request: Request) -> Response:
        path = request.path
        if path in ("", "/"):
            return Response(302, b"", {"Location": PREFIX, **SECURITY_HEADERS})
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        if ".." in name.split("/"):
            raise bad_request("'..' segments are not allowed in the path")
        asset = self.assets.get(name)
        if asset is None or name == "index.html":
            if "." in name.rsplit("/", 1)[-1]:  # a file's name that is not one of the files
                return _not_found(name)
            asset = self.page
        wanted = (request.query.get("v") or [""])[-1]
        immutable = bool(wanted) and name in HASHED and wanted == self.version(name)
        cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
        headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": asset.etag}
        response = Response(200, asset.body, headers)
        response.content_type = asset.content_type
        return response


def _walk(root: Traversable, prefix: str = "") -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for entry in root.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(_walk(entry, f"{name}/"))
        elif entry.is_file():
            found.append((name, entry.read_bytes()))
    return found


def _asset(name: str, body: bytes) -> Asset:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    kind = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Asset(body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _not_found(name: str) -> Response:
    return Response(404, error_body("not_found", f"the dashboard has no file {name!r}"))
