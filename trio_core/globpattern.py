"""Glob patterns as datarhei Core matches them (github.com/gobwas/glob without separators).

Pure functions, no I/O. Syntax:

* ``*`` (and ``**``) any sequence of characters, including none (no separators: ``/`` and
  ``:`` are ordinary characters);
* ``?`` exactly one character;
* ``[abc]``, ``[a-z]`` one character of the class; ``[!abc]`` one character not in it;
* ``{alt1,alt2,...}`` any of the alternatives, each itself a pattern (nesting allowed; as in
  gobwas, a ``{`` still open at the end of the pattern is closed there);
* ``\\c`` the character ``c`` literally.

:func:`compile_glob` raises :class:`GlobError` for an invalid pattern (unclosed ``[``,
an empty class, a trailing ``\\``); :func:`glob_match` matches the whole name.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["GlobError", "compile_glob", "glob_match"]

MAX_PATTERN = 1024  # longer patterns are refused (the regex would be needlessly large)


class GlobError(ValueError):
    """The pattern is not a valid glob."""


def _translate(pattern: str, pos: int, in_alt: bool) -> tuple[str, int]:
    """Translate from ``pos`` up to the end (or, inside ``{}``, up to ``,``/``}``)."""
    out: list[str] = []
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        if in_alt and ch in ",}":
            return "".join(out), pos
        if ch == "\\":
            if pos + 1 >= n:
                raise GlobError("pattern ends with an unfinished escape")
            out.append(re.escape(pattern[pos + 1]))
            pos += 2
        elif ch == "*":
            while pos < n and pattern[pos] == "*":
                pos += 1
            out.append(".*")
        elif ch == "?":
            out.append(".")
            pos += 1
        elif ch == "[":
            end = pattern.find("]", pos + 1)
            if end < 0:
                raise GlobError("unclosed '[' in pattern")
            body = pattern[pos + 1:end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body:
                raise GlobError("empty character class in pattern")
            parts: list[str] = []
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    lo, hi = body[i], body[i + 2]
                    if lo > hi:
                        raise GlobError(f"invalid range {lo}-{hi} in pattern")
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    i += 3
                else:
                    parts.append(re.escape(body[i]))
                    i += 1
            out.append(("[^" if negate else "[") + "".join(parts) + "]")
            pos = end + 1
        elif ch == "{":
            alternatives: list[str] = []
            pos += 1
            while True:
                alt, pos = _translate(pattern, pos, True)
                alternatives.append(alt)
                if pos >= n:
                    break  # gobwas closes an unclosed '{' at the end of the pattern
                if pattern[pos] == "}":
                    pos += 1
                    break
                pos += 1  # ","
            out.append("(?:" + "|".join(alternatives) + ")")
        else:
            out.append(re.escape(ch))
            pos += 1
    return "".join(out), pos


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The compiled whole-string matcher of ``pattern``; GlobError if it is invalid."""
    if len(pattern) > MAX_PATTERN:
        raise GlobError(f"pattern longer than {MAX_PATTERN} characters")
    regex, _ = _translate(pattern, 0, False)
    return re.compile(regex, re.DOTALL)


def glob_match(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern`` entirely; GlobError if the pattern is invalid."""
    return compile_glob(pattern).fullmatch(name) is not None
