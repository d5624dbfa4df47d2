"""trio_core.util.glob against github.com/gobwas/glob v0.2.3 (the version Core v16.16 vendors): the
expected values are what Go's ``glob.Compile(pattern, separators...).Match(name)`` returns on
the same inputs (None: Compile fails). Without separators as the process list's
``idpattern``/``refpattern`` use it, with ``/`` as file listings and cleanup rules do."""

from __future__ import annotations

import re

import pytest

from trio_core.util.glob import MAX_PATTERN_LENGTH, GlobError, compile_glob, glob_match

# (pattern, name, separators, gobwas' answer)
GOBWAS = [
    # process list: no separators
    ("restreamer-ui:ingest:*", "restreamer-ui:ingest:abc", "", True),
    ("*:{ingest,egress}:*", "restreamer-ui:egress:x", "", True),
    ("*:{ingest,egress}:*", "restreamer-ui:snap:x", "", False),
    ("a?c", "abc", "", True), ("a?c", "ac", "", False), ("[a-c]x", "bx", "", True),
    ("[!a-c]x", "bx", "", False), ("a\\*b", "a*b", "", True), ("a\\*b", "axb", "", False),
    ("{a,b{c,d}}", "bd", "", True), ("*", "a/b", "", True), ("[abc", "a", "", None),
    ("{a,b", "a", "", True), ("a{,x}", "a", "", True), ("[]", "a", "", None),
    ("[!]", "a", "", None), ("a]", "a]", "", True), ("a}", "a}", "", True),
    ("a,b", "a,b", "", True),
    # file names: "/" is the separator
    ("/live_**.ts", "/live_0001.ts", "/", True),
    ("/live_**.ts", "/live_a/b/0001.ts", "/", True),  # ** crosses /
    ("/*.ts", "/a.ts", "/", True), ("/*.ts", "/x/a.ts", "/", False),  # * does not
    ("/a?.m3u8", "/ab.m3u8", "/", True), ("/a?.m3u8", "/a/.m3u8", "/", False),
    ("/{a,b}*.ts", "/b1.ts", "/", True), ("/{a,b}*.ts", "/c1.ts", "/", False),
    ("/[a-c]x", "/bx", "/", True), ("/[!a-c]x", "/bx", "/", False),
    ("/a\\*", "/a*", "/", True), ("/a\\*", "/ab", "/", False),
    ("/live.m3u8", "/live.m3u8x", "/", False),  # whole name
    ("/{x,{y,z}w}.ts", "/zw.ts", "/", True), ("/{x,{y,z}w}.ts", "/z.ts", "/", False),
    ("/[ab", "/x", "/", None),
    # the storage helper refused these; gobwas does not (see the module docstring):
    ("/{a,b", "/a", "/", True), ("/{a,b", "/x", "/", False),  # an open '{' closes at the end
    ("/a\\", "/a", "/", True), ("/a\\", "/x", "/", False),  # a final '\' is dropped
    # classes ignore separators; a class is one range or a list, never both
    ("[!a]", "/", "/", True), ("a[/]b", "a/b", "/", True),
    ("[ab-c]", "-", "", True), ("[ab-c]", "b", "", True), ("[a-cx]", "x", "", None),
    ("[\\]]", "]", "", True), ("[]]", "]", "", None), ("[z-a]", "b", "", None),
    ("[a-]]", "]", "", None), ("[!!]", "a", "", True), ("[!!]", "!", "", False),
    # ',' and '}' outside braces are literal, inside they can be escaped
    ("{a\\,b,c}", "a,b", "", True), ("{a\\,b,c}", "b", "", False),
    ("***", "a/b", "/", True), ("", "", "", True), ("", "a", "", False),
]


@pytest.mark.parametrize(("pattern", "name", "separators", "expected"), GOBWAS)
def test_glob_like_gobwas(pattern: str, name: str, separators: str,
                          expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(GlobError):
            glob_match(pattern, name, separators)
    else:
        assert glob_match(pattern, name, separators) is expected


def test_separator_is_a_parameter() -> None:
    assert glob_match("/*.ts", "/x/a.ts") is True  # no separators: '*' crosses '/'
    assert glob_match("/*.ts", "/x/a.ts", "/") is False
    assert glob_match("a?b", "a:b", ":/") is False and glob_match("a?b", "a:b", "/") is True
    assert compile_glob("/*", "/") is compile_glob("/*", "/")  # compiled once
    assert compile_glob("/*", "/") is not compile_glob("/*")


def test_hostile_globs_are_cheap_or_refused() -> None:
    # a backtracking matcher needs ~C(200, 100) steps here; the NFA answers at once
    assert glob_match("*a" * 100 + "b", "a" * 200) is False
    assert glob_match("{" * 120 + "a" + "}" * 120, "a") is True  # deep nesting: built once
    assert glob_match("{" * 1000 + "a", "a") is True  # no recursion: no depth limit needed
    assert glob_match("{a,b}" * 51, "ab" * 25 + "a") is True  # 2**51 alternatives, unexpanded
    # the storage helper refused >256 expansions; gobwas does not, and nothing is expanded
    assert glob_match("/{a,b}" * 10, "/a/b" * 5, "/") is True
    assert glob_match("/{a,b}" * 10, "/x", "/") is False
    hostile = "/" + "**a" * 40 + "b"
    assert not glob_match(hostile, "/" + "a" * 1000, "/")
    assert glob_match(hostile, "/" + "a" * 1000 + "b", "/")
    # many different names through one pattern: the bounded step cache keeps answering right
    # (checked against Python's re on the equivalent regular expression)
    many = compile_glob("*a*{b,c/}*", "/")
    regex = re.compile(r"[^/]*a[^/]*(?:b|c/)[^/]*")
    for i in range(3000):
        name = f"{i:b}".translate(str.maketrans("01", "ab")) + "/c/"[: i % 4]
        assert many.match(name) is bool(regex.fullmatch(name)), name


def test_pattern_length_limit() -> None:
    # our limit (gobwas has none): large enough for a cleanup rule around a 255-char id
    long_id = "p" * 255
    assert glob_match(f"/{long_id}_**.ts", f"/{long_id}_0001.ts", "/")
    assert glob_match("x" * MAX_PATTERN_LENGTH, "x" * MAX_PATTERN_LENGTH)
    for bad in ("x" * (MAX_PATTERN_LENGTH + 1), "x" * 2000):
        with pytest.raises(GlobError):
            glob_match(bad, "/x", "/")
        with pytest.raises(GlobError):
            glob_match(bad, "x")
