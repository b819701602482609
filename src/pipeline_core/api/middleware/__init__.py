"""The API's middleware: each concern of answering a request is one function around the
next, composed once into the app (``compose``).

A ``Handler`` answers a request, or returns ``None`` when it cannot answer without the store
or a wait (the event loop then hands the request to a thread, which runs the same chain with
the full endpoint); every middleware passes ``None`` through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline_core.api.http import Request, Response

Handler = Callable[[Request], Response | None]
Middleware = Callable[[Request, Handler], Response | None]


def compose(middleware: Sequence[Middleware], endpoint: Handler) -> Handler:
    """``middleware[0]`` outermost, ``endpoint`` innermost."""
    handler = endpoint
    for layer in reversed(middleware):
        handler = _wrap(layer, handler)
    return handler


def _wrap(layer: Middleware, inner: Handler) -> Handler:
    def handle(request: Request) -> Response | None:
        return layer(request, inner)

    return handle
