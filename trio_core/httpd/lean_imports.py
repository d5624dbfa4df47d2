"""Keep Quart from loading the HTTP servers trio-core does not run (idle memory, issue 23).

Quart and quart-trio import ``hypercorn.asyncio`` and ``hypercorn.trio`` at import time
for their ``app.run``/``run_task`` helpers, and with them hypercorn's whole protocol stack
(h11, h2, hpack, wsproto: ~2.6 MB RSS), and ``hypercorn.typing`` for type names only (which
imports h11, h2 and ``multiprocessing``: ~2 MB more). trio-core serves with
:mod:`trio_core.httpd` and never calls them. :func:`install` puts placeholder modules in
``sys.modules`` (only when the real ones are not loaded yet): the server modules' ``serve``
loads the real module on first call and delegates to it (so ``app.run()`` still works where
someone calls it); every name of the typing module is ``typing.Any`` (the names are used in
annotations and ``cast`` only). Imported from ``trio_core/__init__.py`` (before anything
imports Quart); idempotent; no I/O.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing
from typing import Any

__all__ = ["PLACEHOLDERS", "TYPE_PLACEHOLDERS", "install"]

PLACEHOLDERS = ("hypercorn.asyncio", "hypercorn.trio")
TYPE_PLACEHOLDERS = ("hypercorn.typing",)


class _LazyServe(types.ModuleType):
    """Stands in for a hypercorn server module; its ``serve`` imports the real one."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"placeholder for {name} (loaded on first use)")
        self.__placeholder__ = True

    def _real(self) -> types.ModuleType:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return importlib.import_module(self.__name__)

    def serve(self, *args: Any, **kwargs: Any) -> Any:
        return self._real().serve(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._real(), name)


class _TypeNames(types.ModuleType):
    """Stands in for a module of type names: each is ``typing.Any``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return typing.Any


def install() -> None:
    """Put the placeholders in ``sys.modules`` unless the real modules are loaded."""
    for name in PLACEHOLDERS:
        if name not in sys.modules:
            sys.modules[name] = _LazyServe(name)
    for name in TYPE_PLACEHOLDERS:
        if name not in sys.modules:
            sys.modules[name] = _TypeNames(name, "type names of hypercorn (typing.Any each)")
    try:  # ``import hypercorn.trio`` then ``hypercorn.trio.serve`` works too
        parent = importlib.import_module("hypercorn")
    except ImportError:  # pragma: no cover - Quart depends on hypercorn
        return
    for name in PLACEHOLDERS + TYPE_PLACEHOLDERS:
        child = name.rsplit(".", 1)[1]
        if not hasattr(parent, child):
            setattr(parent, child, sys.modules[name])
