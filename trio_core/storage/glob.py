"""Glob patterns as datarhei Core matches file names (gobwas/glob with ``/`` as separator).

``*`` matches any run of characters except ``/``, ``**`` any run including ``/``, ``?`` one
character except ``/``, ``[abc]``/``[a-z]``/``[!abc]`` a character class, ``{a,b}`` one of the
alternatives (which may contain patterns themselves), ``\\x`` the character ``x``. A pattern
matches the whole name.

Matching simulates the pattern as an automaton (a set of positions advanced one character at
a time), so it costs O(len(name) x len(pattern)) whatever the pattern — no backtracking
blow-up on hostile patterns such as ``**a**a**a**b``. Alternatives are expanded up front (at
most :data:`MAX_ALTERNATIVES`). Pure functions; :class:`GlobError` (a ValueError) for a
malformed pattern or one longer than :data:`MAX_GLOB_LENGTH`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["MAX_ALTERNATIVES", "MAX_GLOB_LENGTH", "Glob", "GlobError", "compile_glob",
           "glob_match"]

MAX_GLOB_LENGTH = 1024
MAX_ALTERNATIVES = 256

# tokens: a 1-char str = that literal; STAR, DSTAR, ANY1; or a Class
STAR, DSTAR, ANY1 = object(), object(), object()


class GlobError(ValueError):
    """The pattern is malformed (unclosed ``[`` or ``{``, trailing ``\\``) or too large."""


@dataclass(frozen=True)
class _Class:
    negate: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def matches(self, ch: str) -> bool:
        inside = ch in self.chars or any(lo <= ch <= hi for lo, hi in self.ranges)
        return (not inside and ch != "/") if self.negate else inside


def _parse(pattern: str, pos: int, in_alt: bool) -> tuple[list[list[object]], int]:
    """Token sequences for ``pattern[pos:]`` (all expansions of its alternatives)."""
    sequences: list[list[object]] = [[]]

    def extend(tokens: list[list[object]]) -> None:
        nonlocal sequences
        sequences = [s + t for s in sequences for t in tokens]
        if len(sequences) > MAX_ALTERNATIVES:
            raise GlobError(f"glob expands to more than {MAX_ALTERNATIVES} alternatives")

    n = len(pattern)
    while pos < n:
        c = pattern[pos]
        if in_alt and c in ",}":
            return sequences, pos
        if c == "*":
            if pos + 1 < n and pattern[pos + 1] == "*":
                extend([[DSTAR]])
                pos += 2
            else:
                extend([[STAR]])
                pos += 1
        elif c == "?":
            extend([[ANY1]])
            pos += 1
        elif c == "\\":
            if pos + 1 >= n:
                raise GlobError(f"trailing backslash in glob {pattern!r}")
            extend([[pattern[pos + 1]]])
            pos += 2
        elif c == "[":
            end = pattern.find("]", pos + 2)
            if end < 0:
                raise GlobError(f"unclosed '[' in glob {pattern!r}")
            body = pattern[pos + 1:end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            chars: set[str] = set()
            ranges: list[tuple[str, str]] = []
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    ranges.append((body[i], body[i + 2]))
                    i += 3
                else:
                    chars.add(body[i])
                    i += 1
            extend([[_Class(negate, frozenset(chars), tuple(ranges))]])
            pos = end + 1
        elif c == "{":
            alternatives: list[list[object]] = []
            pos += 1
            while True:
                alt, pos = _parse(pattern, pos, True)
                alternatives.extend(alt)
                if pos >= n:
                    raise GlobError(f"unclosed '{{' in glob {pattern!r}")
                if pattern[pos] == "}":
                    pos += 1
                    break
                pos += 1  # ","
            extend(alternatives)
        else:
            extend([[c]])
            pos += 1
    if in_alt:
        raise GlobError(f"unclosed '{{' in glob {pattern!r}")
    return sequences, pos


def _closure(tokens: tuple[object, ...], states: set[int]) -> set[int]:
    """Add the positions reachable without consuming a character (stars match nothing)."""
    out = set(states)
    for i in sorted(states):
        while i < len(tokens) and (tokens[i] is STAR or tokens[i] is DSTAR):
            i += 1
            out.add(i)
    return out


def _run(tokens: tuple[object, ...], name: str) -> bool:
    end = len(tokens)
    states = _closure(tokens, {0})
    for ch in name:
        advanced: set[int] = set()
        for i in states:
            if i == end:
                continue
            token = tokens[i]
            if token is DSTAR or (token is STAR and ch != "/"):
                advanced.add(i)
            elif token is ANY1:
                if ch != "/":
                    advanced.add(i + 1)
            elif isinstance(token, _Class):
                if token.matches(ch):
                    advanced.add(i + 1)
            elif token == ch:
                advanced.add(i + 1)
        if not advanced:
            return False
        states = _closure(tokens, advanced)
    return end in states


def _literal_affixes(tokens: tuple[object, ...]) -> tuple[str, str]:
    """The literal prefix and suffix every match must have (a cheap first filter)."""
    prefix: list[str] = []
    for token in tokens:
        if not isinstance(token, str):
            break
        prefix.append(token)
    if len(prefix) == len(tokens):
        return "".join(prefix), ""
    suffix: list[str] = []
    for token in reversed(tokens):
        if not isinstance(token, str):
            break
        suffix.append(token)
    return "".join(prefix), "".join(reversed(suffix))


@dataclass(frozen=True)
class Glob:
    """A compiled pattern: ``match(name)`` is True when the whole name matches."""

    pattern: str
    alternatives: tuple[tuple[tuple[object, ...], str, str], ...]  # (tokens, prefix, suffix)

    def match(self, name: str) -> bool:
        for tokens, prefix, suffix in self.alternatives:
            if not (name.startswith(prefix) and name.endswith(suffix)):
                continue
            if _run(tokens, name):
                return True
        return False


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Glob:
    """The compiled pattern (cached). Raises GlobError."""
    if len(pattern) > MAX_GLOB_LENGTH:
        raise GlobError(f"glob longer than {MAX_GLOB_LENGTH} characters")
    sequences, _ = _parse(pattern, 0, False)
    alternatives = []
    for sequence in sequences:
        tokens = tuple(sequence)
        alternatives.append((tokens, *_literal_affixes(tokens)))
    return Glob(pattern, tuple(alternatives))


def glob_match(pattern: str, name: str) -> bool:
    """True when ``name`` matches ``pattern`` as a whole. Raises GlobError."""
    return compile_glob(pattern).match(name)
