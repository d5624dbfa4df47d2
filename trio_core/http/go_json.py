"""JSON responses with Core's number formatting (``25.000`` for Go's ``%.3f`` numbers).

Python's json module writes every float with ``repr``; Core writes many progress values with
exactly three decimals. Values that must look like that are :class:`~trio_core.ffmpeg.progress.Fixed3`
floats. :func:`core_dumps` renders them so: it replaces each Fixed3 inside the given subtrees
by a string carrying a random per-call marker, serialises, and turns the marked strings back
into bare numbers. The marker is 128 random bits, so no client-supplied string can forge one.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from quart import Response

from trio_core.ffmpeg.progress import Fixed3

__all__ = ["core_dumps", "core_json_response"]

_MAX_DEPTH = 32  # progress/state objects are shallow; deeper values are left untouched


def _mark(obj: Any, token: str, depth: int = 0) -> Any:
    if isinstance(obj, Fixed3):
        return f"{token}{float(obj):.3f}{token}"
    if depth >= _MAX_DEPTH:
        return obj
    if isinstance(obj, dict):
        return {k: _mark(v, token, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mark(v, token, depth + 1) for v in obj]
    return obj


def core_dumps(payload: Any, *, marked: tuple[str, ...] | None = None) -> str:
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
    """A JSON response rendered by :func:`core_dumps`."""
    return Response(core_dumps(payload, marked=marked), status=status,
                    content_type="application/json")
