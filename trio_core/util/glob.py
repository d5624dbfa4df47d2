"""Glob patterns as datarhei Core matches them: github.com/gobwas/glob v0.2.3 semantics.

One matcher for both of Core's uses, like gobwas' ``glob.Compile(pattern, separators...)``:
process lists' ``idpattern``/``refpattern`` compile without separators, file listings and
cleanup rules (memfs/disk) with ``"/"`` as the separator. Pure functions, no I/O, no state
beyond a per-pattern transition cache; nothing here blocks or awaits, so cancellation is the
caller's business (a long listing should checkpoint between names).

Syntax, exactly as gobwas' lexer and parser read it:

* ``*`` any run of characters that are not separators; ``**`` any run at all (without
  separators both are the same); ``***`` is ``**`` followed by ``*``;
* ``?`` exactly one character that is not a separator;
* ``[abc]`` one of the characters, ``[a-z]`` one in the range, ``[!...]`` the complement
  (classes ignore separators, as gobwas' ``List``/``Range``). A class is either one range
  or a list, never both: ``[ab-c]`` is the list ``a b - c``, ``[a-cx]`` is an error;
  ``\\`` escapes inside a list (``[\\]]`` is ``]``);
* ``{alt1,alt2,...}`` any of the alternatives, each itself a pattern (nesting allowed,
  empty alternatives allowed). A ``{`` still open at the end of the pattern is closed there;
  ``,`` and ``}`` outside braces and ``]`` outside a class are ordinary characters;
* ``\\c`` the character ``c``; a ``\\`` at the very end is dropped (gobwas does this too).

A pattern matches a whole name. :func:`compile_glob` raises :class:`GlobError` (a
``ValueError``) for what gobwas refuses -- an unclosed ``[``, an empty class (``[]``,
``[!]``), a range with ``hi < lo``, a class mixing range and list -- and for a pattern
longer than :data:`MAX_PATTERN_LENGTH` characters (our limit, not gobwas'; a cleanup rule
embeds a process id of up to 255 characters, so it is generous).

Matching cost is linear in the name whatever the pattern: the pattern is compiled into a
Thompson NFA (one state per pattern element, alternatives are never expanded, so
``{a,b}{a,b}...`` stays small) and simulated set-by-set, no backtracking; each step costs at
most O(len(pattern)), and steps already taken are cached (a lazily built DFA of at most
:data:`MAX_CACHED_STATES` states per pattern), so matching many similar names is a dict
lookup per character.

Syntax and errors agree with gobwas on every pattern (checked against the Go library on
random patterns). Matching follows the syntax's meaning; three slips of gobwas' optimizing
compiler are deliberately not copied: a pattern that is a single one-character matcher
(``?``, ``[!a]``, ``{?,x}``) matching the empty name, ``a*a`` matching ``a`` (overlapping
prefix and suffix), and ``*`` followed by an empty ``{`` (``*{``, ``*{}``) matching nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

__all__ = ["MAX_CACHED_STATES", "MAX_PATTERN_LENGTH", "Glob", "GlobError", "compile_glob",
           "glob_match"]

MAX_PATTERN_LENGTH = 1024  # longer patterns are refused
MAX_CACHED_STATES = 128  # DFA states cached per compiled pattern (the cache restarts beyond)

_Pred = Callable[[str], bool]


class GlobError(ValueError):
    """The pattern is not a valid glob (gobwas would refuse it) or is too long."""


class _Nfa:
    """States are ints. A consuming state has a predicate and one successor; any other state
    has epsilon edges only. Element by element the pattern appends to ``current``, the
    epsilon state standing for "this position of the pattern"."""

    def __init__(self) -> None:
        self.pred: list[_Pred | None] = []
        self.succ: list[int] = []
        self.eps: list[list[int]] = []
        self.current = self.new()

    def new(self, pred: _Pred | None = None) -> int:
        self.pred.append(pred)
        self.succ.append(-1)
        self.eps.append([])
        return len(self.pred) - 1

    def one(self, pred: _Pred) -> None:
        """One character matching ``pred``."""
        state = self.new(pred)
        self.eps[self.current].append(state)
        self.current = self.succ[state] = self.new()

    def run(self, pred: _Pred) -> None:
        """Any number of characters matching ``pred`` (a loop back to this position)."""
        state = self.new(pred)
        self.eps[self.current].append(state)
        self.succ[state] = self.current
        after = self.new()
        self.eps[self.current].append(after)
        self.current = after


def _anything(_: str) -> bool:
    return True


def _list_pred(chars: str, negate: bool) -> _Pred:
    members = frozenset(chars)
    return lambda ch: (ch in members) != negate


def _range_pred(lo: str, hi: str, negate: bool) -> _Pred:
    return lambda ch: (lo <= ch <= hi) != negate


def _text(pattern: str, pos: int, breakers: str) -> tuple[str, int]:
    """gobwas' fetchText: characters up to an unescaped breaker (or the end); ``\\`` escapes
    the next character, a final lone ``\\`` is dropped."""
    out: list[str] = []
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        if ch == "\\":
            if pos + 1 < n:
                out.append(pattern[pos + 1])
            pos += 2
            continue
        if ch in breakers:
            break
        out.append(ch)
        pos += 1
    return "".join(out), min(pos, n)


def _class(pattern: str, pos: int) -> tuple[_Pred, int]:
    """gobwas' fetchRange + parserRange for the class whose ``[`` is before ``pos``."""
    n = len(pattern)
    negate = False
    if pos < n and pattern[pos] == "!":
        negate = True
        pos += 1
    if pos >= n:
        raise GlobError("unclosed '[' in pattern")
    if pos + 1 < n and pattern[pos + 1] == "-":
        lo = pattern[pos]
        if pos + 2 >= n:
            raise GlobError("unclosed '[' in pattern")
        hi = pattern[pos + 2]
        pos += 3
        if hi < lo:
            raise GlobError(f"invalid range {lo}-{hi} in pattern")
        if pos >= n:
            raise GlobError("unclosed '[' in pattern")
        if pattern[pos] != "]":
            raise GlobError("a class is one range or a list of characters, not both")
        if lo == "\0" or hi == "\0":  # gobwas takes a NUL bound for "no range"
            raise GlobError("invalid character class in pattern")
        return _range_pred(lo, hi, negate), pos + 1
    chars, pos = _text(pattern, pos, "]")
    if pos >= n:
        raise GlobError("unclosed '[' in pattern")
    if not chars:
        raise GlobError("empty character class in pattern")
    return _list_pred(chars, negate), pos + 1


def _build(pattern: str, separators: str) -> _Nfa:
    seps = frozenset(separators)

    def not_separator(ch: str) -> bool:
        return ch not in seps

    nfa = _Nfa()
    # per open '{': (entry state, join state)
    braces: list[tuple[int, int]] = []
    pos, n = 0, len(pattern)
    while pos < n:
        ch = pattern[pos]
        if ch == "{":
            entry, join = nfa.current, nfa.new()
            braces.append((entry, join))
            nfa.current = nfa.new()
            nfa.eps[entry].append(nfa.current)
            pos += 1
        elif ch == "," and braces:
            entry, join = braces[-1]
            nfa.eps[nfa.current].append(join)
            nfa.current = nfa.new()
            nfa.eps[entry].append(nfa.current)
            pos += 1
        elif ch == "}" and braces:
            _, join = braces.pop()
            nfa.eps[nfa.current].append(join)
            nfa.current = join
            pos += 1
        elif ch == "[":
            pred, pos = _class(pattern, pos + 1)
            nfa.one(pred)
        elif ch == "?":
            nfa.one(not_separator)
            pos += 1
        elif ch == "*":
            if pos + 1 < n and pattern[pos + 1] == "*":
                nfa.run(_anything)
                pos += 2
            else:
                nfa.run(not_separator)
                pos += 1
        else:
            text, pos = _text(pattern, pos, "?*[{}," if braces else "?*[{")
            for c in text:
                nfa.one(c.__eq__)
    while braces:  # gobwas closes a '{' left open at the end
        _, join = braces.pop()
        nfa.eps[nfa.current].append(join)
        nfa.current = join
    return nfa


class Glob:
    """A compiled pattern; :meth:`match` tests a whole name (never raises)."""

    def __init__(self, pattern: str, separators: str = "") -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise GlobError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
        self.pattern = pattern
        self.separators = separators
        nfa = _build(pattern, separators)
        self._pred = nfa.pred
        self._succ = nfa.succ
        self._eps = nfa.eps
        self._final = nfa.current
        self._start = self._closure([0])
        self._step: dict[tuple[frozenset[int], str], frozenset[int]] = {}
        self._states: dict[frozenset[int], frozenset[int]] = {}

    def _closure(self, states: list[int]) -> frozenset[int]:
        """The consuming states (and the final one) reachable through epsilon edges."""
        out: set[int] = set()
        seen: set[int] = set()
        stack = states
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            if self._pred[state] is not None or state == self._final:
                out.add(state)
            if self._pred[state] is None:
                stack.extend(self._eps[state])
        return frozenset(out)

    def _advance(self, current: frozenset[int], ch: str) -> frozenset[int]:
        nxt = self._step.get((current, ch))
        if nxt is None:
            pred, succ = self._pred, self._succ
            nxt = self._closure([succ[s] for s in current
                                 if (p := pred[s]) is not None and p(ch)])
            known = self._states.get(nxt)
            if known is None:
                if len(self._states) >= MAX_CACHED_STATES:
                    self._states.clear()
                    self._step.clear()
                self._states[nxt] = nxt
            else:
                nxt = known  # one object per DFA state: cache hits compare by identity
            self._step[(current, ch)] = nxt
        return nxt

    def match(self, name: str) -> bool:
        current = self._start
        for ch in name:
            current = self._advance(current, ch)
            if not current:
                return False
        return self._final in current


@lru_cache(maxsize=256)
def compile_glob(pattern: str, separators: str = "") -> Glob:
    """The compiled matcher of ``pattern`` (cached); ``separators`` are the characters ``*``
    and ``?`` do not match (gobwas' ``Compile(pattern, separators...)``). GlobError if the
    pattern is invalid."""
    return Glob(pattern, separators)


def glob_match(pattern: str, name: str, separators: str = "") -> bool:
    """Whether ``name`` matches ``pattern`` entirely; GlobError if the pattern is invalid."""
    return compile_glob(pattern, separators).match(name)
