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
an empty class, a trailing ``\\``, more than :data:`MAX_PATTERN` characters);
:func:`glob_match` matches the whole name. Matching simulates a small NFA (no backtracking):
at worst O(len(name) * len(pattern)) steps, whatever the pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["GlobError", "Glob", "compile_glob", "glob_match"]

MAX_PATTERN = 256  # longer patterns are refused


class GlobError(ValueError):
    """The pattern is not a valid glob."""


# The pattern is compiled into a small NFA and simulated state-set by state-set, so matching
# costs O(len(name) * len(pattern)) at worst -- no backtracking, whatever the pattern.

_Pred = Callable[[str], bool]


@dataclass(eq=False)
class _State:
    pred: _Pred | None = None  # consumes one character matching pred (None: epsilon/match)
    next: list[_State] = field(default_factory=list)  # successors (epsilon edges if no pred)
    final: bool = False


def _class_pred(body: str) -> _Pred:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    if not body:
        raise GlobError("empty character class in pattern")
    singles: set[str] = set()
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo > hi:
                raise GlobError(f"invalid range {lo}-{hi} in pattern")
            ranges.append((lo, hi))
            i += 3
        else:
            singles.add(body[i])
            i += 1

    def pred(ch: str) -> bool:
        hit = ch in singles or any(lo <= ch <= hi for lo, hi in ranges)
        return hit != negate

    return pred


_Node = tuple[str, object]  # ("pred", predicate) | ("star", None) | ("alt", [sequences])


def _parse(pattern: str, pos: int, in_alt: bool) -> tuple[list[_Node], int]:
    """Parse ``pattern[pos:]`` (up to ``,``/``}`` inside braces) into a sequence of nodes."""
    seq: list[_Node] = []
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        if in_alt and ch in ",}":
            break
        if ch == "\\":
            if pos + 1 >= n:
                raise GlobError("pattern ends with an unfinished escape")
            seq.append(("pred", _literal(pattern[pos + 1])))
            pos += 2
        elif ch == "*":
            while pos < n and pattern[pos] == "*":
                pos += 1
            seq.append(("star", None))
        elif ch == "?":
            seq.append(("pred", _anything))
            pos += 1
        elif ch == "[":
            end = pattern.find("]", pos + 1)
            if end < 0:
                raise GlobError("unclosed '[' in pattern")
            seq.append(("pred", _class_pred(pattern[pos + 1:end])))
            pos = end + 1
        elif ch == "{":
            branches: list[list[_Node]] = []
            pos += 1
            while True:
                branch, pos = _parse(pattern, pos, True)
                branches.append(branch)
                if pos >= n:
                    break  # gobwas closes an unclosed '{' at the end of the pattern
                if pattern[pos] == "}":
                    pos += 1
                    break
                pos += 1  # ","
            seq.append(("alt", branches))
        else:
            seq.append(("pred", _literal(ch)))
            pos += 1
    return seq, pos


def _literal(c: str) -> _Pred:
    return lambda x: x == c


def _anything(_: str) -> bool:
    return True


def _link(seq: list[_Node], after: _State) -> _State:
    """The NFA of ``seq`` whose end leads to ``after`` (built back to front, each node once)."""
    state = after
    for kind, value in reversed(seq):
        if kind == "pred":
            state = _State(pred=value, next=[state])  # type: ignore[arg-type]
        elif kind == "star":
            loop = _State()
            loop.next = [state, _State(pred=_anything, next=[loop])]
            state = loop
        else:
            state = _State(next=[_link(branch, state) for branch in value])  # type: ignore[union-attr]
    return state


def _closure(states: list[_State]) -> set[_State]:
    """The consuming/final states reachable through epsilon edges (no epsilon cycles exist)."""
    out: set[_State] = set()
    stack = list(states)
    seen: set[int] = set()
    while stack:
        st = stack.pop()
        if id(st) in seen:
            continue
        seen.add(id(st))
        if st.pred is not None or st.final:
            out.add(st)
        else:
            stack.extend(st.next)
    return out


class Glob:
    """A compiled pattern; :meth:`match` tests a whole name."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise GlobError(f"pattern longer than {MAX_PATTERN} characters")
        seq, _ = _parse(pattern, 0, False)
        self._start = _closure([_link(seq, _State(final=True))])

    def match(self, name: str) -> bool:
        current = self._start
        for ch in name:
            nxt: list[_State] = []
            for st in current:
                if st.pred is not None and st.pred(ch):
                    nxt.extend(st.next)
            if not nxt:
                return False
            current = _closure(nxt)
        return any(st.final for st in current)


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Glob:
    """The compiled matcher of ``pattern``; GlobError if it is invalid."""
    return Glob(pattern)


def glob_match(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern`` entirely; GlobError if the pattern is invalid."""
    return compile_glob(pattern).match(name)
