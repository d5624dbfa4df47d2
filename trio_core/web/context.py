"""The request context: ``request``, ``g`` and ``current_app`` as proxies of a ContextVar.

:class:`RequestContext` holds one request's :class:`~trio_core.web.wrappers.Request`, its
``g`` (:class:`Globals`) and the app; :func:`bound` sets it for the duration of a ``with``
block (the request's handling: hooks, view, error handlers, teardown). trio copies the
context into tasks started inside, so tasks a view starts see the same request. Outside a
request the proxies raise ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from werkzeug.local import LocalProxy

from trio_core.web.wrappers import Request

__all__ = ["Globals", "RequestContext", "bound", "current_app", "g", "request"]


class Globals:
    """Per-request scratch space (``g.name = value``; ``g.get(name, default)``)."""

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.__dict__


class RequestContext:
    """What the proxies point at while one request is handled."""

    __slots__ = ("app", "g", "request")

    def __init__(self, app: Any, request: Request) -> None:  # app: trio_core.web.app.App
        self.app = app
        self.request = request
        self.g = Globals()


_context: ContextVar[RequestContext] = ContextVar("trio_core.web.request")
_UNBOUND = "outside of a request (no request context)"

request = cast(Request, LocalProxy(_context, "request", unbound_message=_UNBOUND))
g = cast(Globals, LocalProxy(_context, "g", unbound_message=_UNBOUND))
current_app: Any = LocalProxy(_context, "app", unbound_message=_UNBOUND)  # the App


@contextmanager
def bound(context: RequestContext) -> Iterator[RequestContext]:
    """Make ``context`` the current request's within the block."""
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)
