"""Glob patterns as datarhei Core matches file names (gobwas/glob with ``/`` as separator).

``*`` matches any run of characters except ``/``, ``**`` any run including ``/``, ``?`` one
character except ``/``, ``[abc]``/``[a-z]``/``[!abc]`` a character class, ``{a,b}`` one of the
alternatives (which may contain patterns themselves), ``\\x`` the character ``x``. A pattern
matches the whole name. Pure functions; :class:`GlobError` (a ValueError) for a malformed
pattern.
"""

from __future__ import annotations

import functools
import re

__all__ = ["GlobError", "compile_glob", "glob_match"]


class GlobError(ValueError):
    """The pattern is malformed (unclosed ``[`` or ``{``, trailing ``\\``)."""


def _translate(pattern: str, pos: int, in_alt: bool) -> tuple[str, int]:
    out: list[str] = []
    n = len(pattern)
    while pos < n:
        c = pattern[pos]
        if in_alt and c in ",}":
            return "".join(out), pos
        if c == "*":
            if pos + 1 < n and pattern[pos + 1] == "*":
                out.append(".*")
                pos += 2
            else:
                out.append("[^/]*")
                pos += 1
        elif c == "?":
            out.append("[^/]")
            pos += 1
        elif c == "\\":
            if pos + 1 >= n:
                raise GlobError(f"trailing backslash in glob {pattern!r}")
            out.append(re.escape(pattern[pos + 1]))
            pos += 2
        elif c == "[":
            end = pattern.find("]", pos + 2)
            if end < 0:
                raise GlobError(f"unclosed '[' in glob {pattern!r}")
            body = pattern[pos + 1:end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            items: list[str] = []
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    items.append(f"{re.escape(body[i])}-{re.escape(body[i + 2])}")
                    i += 3
                else:
                    items.append(re.escape(body[i]))
                    i += 1
            out.append(("[^/" if negate else "[") + "".join(items) + "]")
            pos = end + 1
        elif c == "{":
            alternatives: list[str] = []
            pos += 1
            while True:
                alt, pos = _translate(pattern, pos, True)
                alternatives.append(alt)
                if pos >= n:
                    raise GlobError(f"unclosed '{{' in glob {pattern!r}")
                if pattern[pos] == "}":
                    pos += 1
                    break
                pos += 1  # ","
            out.append("(?:" + "|".join(alternatives) + ")")
        else:
            out.append(re.escape(c))
            pos += 1
    if in_alt:
        raise GlobError(f"unclosed '{{' in glob {pattern!r}")
    return "".join(out), pos


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The compiled regular expression for ``pattern`` (cached). Raises GlobError."""
    regex, _ = _translate(pattern, 0, False)
    return re.compile(r"\A" + regex + r"\Z", re.DOTALL)


def glob_match(pattern: str, name: str) -> bool:
    """True when ``name`` matches ``pattern`` as a whole. Raises GlobError."""
    return compile_glob(pattern).match(name) is not None
