"""Path names inside a storage: one canonical form, escapes refused.

Every file of a storage is named by an absolute, normalised path (``/live/a.m3u8``), as in
datarhei Core's listings. :func:`clean_path` turns a request path into that form and refuses
what could mean something outside the storage or confuse a file system: ``..`` segments,
NUL bytes and backslashes (:class:`BadPath`, a ValueError whose message names the problem).
Empty segments and ``.`` are dropped (``//a/./b`` -> ``/a/b``). Pure functions.
"""

from __future__ import annotations

__all__ = ["MAX_PATH_LENGTH", "BadPath", "clean_path"]

MAX_PATH_LENGTH = 1024


class BadPath(ValueError):
    """The path is not acceptable; ``str(exc)`` says why."""


def clean_path(raw: str) -> str:
    """The canonical ``/a/b`` form of ``raw`` (``/`` for the root). Raises BadPath."""
    if len(raw) > MAX_PATH_LENGTH:
        raise BadPath(f"path longer than {MAX_PATH_LENGTH} characters")
    if "\x00" in raw:
        raise BadPath("path contains a NUL byte")
    if "\\" in raw:
        raise BadPath("path contains a backslash")
    parts: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise BadPath("path must not contain '..'")
        parts.append(part)
    return "/" + "/".join(parts)
