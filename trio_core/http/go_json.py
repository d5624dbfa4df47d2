"""JSON responses with Core's number formatting (``25.000`` for Go's ``%.3f`` numbers).

Python's json module writes every float with ``repr``; Core writes many progress values with
exactly three decimals. Values that must look like that are :class:`~trio_core.ffmpeg.progress.Fixed3`
floats. :func:`core_dumps` renders them so: it replaces each Fixed3 inside the given subtrees
by a string carrying a random per-call marker, serialises, and turns the marked strings back
into bare numbers. The marker is 128 random bits, so no client-supplied string can forge one.

That is the reference path. The fast path (:func:`core_dumps`, used by every hot GET) serialises
with ``orjson``, which hands each Fixed3 to a ``default`` that returns the same ``%.3f`` text as
an ``orjson.Fragment`` (no marking copy, no regex). Differences from the reference: non-ASCII
characters are written as UTF-8 instead of ``\\uXXXX`` escapes (Go writes UTF-8 too), and
floats use orjson's shortest form (``0.00001`` for ``1e-05``); both parse to the same values.
Payloads orjson refuses (integers beyond 64 bits, non-string keys, deeper than 254 levels) fall
back to the reference path. :class:`Prerendered` wraps a value already serialised (the API keeps
one per process progress object, which the engine replaces rather than mutates, in a
:class:`PrerenderCache`), so a list of many processes pays for each progress once per tick.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from trio_core.ffmpeg.progress import Fixed3
from trio_core.web import Response

__all__ = ["JSON_CONTENT_TYPE", "JSON_CONTENT_TYPE_BYTES", "PrerenderCache", "Prerendered", "core_dumps", "core_dumps_bytes",
           "core_json_response", "reference_dumps"]

#: Core's JSON answers (echo's ``c.JSON``) carry this Content-Type, and their body ends with a
#: newline (Go's ``json.Encoder``); clients (core_client) compare the type exactly
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
JSON_CONTENT_TYPE_BYTES = JSON_CONTENT_TYPE.encode()

_MAX_DEPTH = 32  # progress/state objects are shallow; deeper values are left untouched


class Prerendered:
    """``value`` with its :func:`core_dumps` JSON made once (``value`` must not change)."""

    __slots__ = ("fragment", "source", "value")

    def __init__(self, value: Any, source: Any = None) -> None:
        self.value = value
        self.source = value if source is None else source  # what the cache checks
        self.fragment = orjson.Fragment(core_dumps_bytes(value))


class PrerenderCache:
    """One :class:`Prerendered` per key, reused while the key maps to the same object
    (identity): for objects that are replaced, never mutated, when they change."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[str, Prerendered] = {}
        self._limit = limit

    def get(self, key: str, source: Any,
            build: Callable[[Any], Any] | None = None) -> Prerendered:
        """The entry of ``key`` if it was made from this very ``source``, else a new one of
        ``build(source)`` (default: ``source`` itself)."""
        hit = self._entries.get(key)
        if hit is not None and hit.source is source:
            return hit
        if hit is None and len(self._entries) >= self._limit:
            self._entries.clear()  # bounded: keys of deleted processes go eventually
        value = source if build is None else build(source)
        entry = self._entries[key] = Prerendered(value, source)
        return entry


def _mark(obj: Any, token: str, depth: int = 0) -> Any:
    if isinstance(obj, Prerendered):
        return _mark(obj.value, token, depth)
    if isinstance(obj, Fixed3):
        return f"{token}{float(obj):.3f}{token}"
    if depth >= _MAX_DEPTH:
        return obj
    if isinstance(obj, dict):
        return {k: _mark(v, token, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mark(v, token, depth + 1) for v in obj]
    return obj


def _default(obj: Any) -> Any:
    if type(obj) is Prerendered:
        return obj.fragment
    if isinstance(obj, Fixed3):
        return orjson.Fragment(b"%.3f" % obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def core_dumps_bytes(payload: Any, *, marked: tuple[str, ...] | None = None) -> bytes:
    """:func:`core_dumps` as UTF-8 bytes (what a response body needs).

    Fixed3 values only exist in engine-built state/progress objects, never in user data
    (metadata and configs are decoded JSON), so formatting them everywhere is the same as
    formatting them inside the ``marked`` subtrees; ``marked`` matters only for the fallback.
    """
    try:
        return orjson.dumps(payload, default=_default)
    except TypeError:  # orjson.JSONEncodeError: big ints, non-str keys, very deep values
        # the whole payload is marked so Prerendered values unwrap (Fixed3 are never user data)
        return reference_dumps(payload).encode()


def core_dumps(payload: Any, *, marked: tuple[str, ...] | None = None) -> str:
    """Compact JSON of ``payload`` with Fixed3 values written as ``%.3f`` numbers (orjson)."""
    return core_dumps_bytes(payload, marked=marked).decode()


def reference_dumps(payload: Any, *, marked: tuple[str, ...] | None = None) -> str:
    """Compact JSON of ``payload`` with Fixed3 values written as ``%.3f`` numbers.

    ``marked`` names the top-level keys of a dict payload to format (None = the whole payload);
    other subtrees (e.g. user metadata) are serialised as they are.
    """
    token = secrets.token_hex(16)
    if marked is None:
        prepared = _mark(payload, token)
    else:
        prepared = {k: (_mark(v, token) if k in marked else v) for k, v in payload.items()}
    text = json.dumps(prepared, separators=(",", ":"))
    return re.sub(f'"{token}(-?[0-9]+\\.[0-9]{{3}}){token}"', r"\1", text)


def core_json_response(payload: Any, status: int = 200, *,
                       marked: tuple[str, ...] | None = None) -> Response:
    """A JSON response rendered by :func:`core_dumps` (Core's type, newline-terminated)."""
    return Response(core_dumps_bytes(payload, marked=marked) + b"\n", status=status,
                    content_type=JSON_CONTENT_TYPE)
