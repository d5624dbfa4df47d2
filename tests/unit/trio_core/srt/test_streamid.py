"""trio_core.srt.streamid: stream ids parsed and checked as Core does (incl. Core's test table)."""

from __future__ import annotations

import pytest

from trio_core.srt.streamid import StreamId, StreamIdRefused, check_stream_id, parse_stream_id


@pytest.mark.parametrize(("text", "expected"), [
    # Core srt/srt_test.go cases
    ("bla", StreamId("bla", "request", "")),
    ("bla,mode:publish", StreamId("bla", "publish", "")),
    ("123456789", StreamId("123456789", "request", "")),
    ("bla,token:foobar", StreamId("bla", "request", "foobar")),
    ("bla,token:foo,bar", StreamId("bla", "request", "foo,bar")),
    ("123456789,mode:publish,token:foobar", StreamId("123456789", "publish", "foobar")),
    ("mode:publish", StreamId("mode:publish", "request", "")),
    # more: token first, commas in the resource, repeated keys, empty values
    ("a,token:t,mode:publish", StreamId("a", "publish", "t")),
    ("a,b,mode:publish", StreamId("a,b", "publish", "")),
    ("x,mode:", StreamId("x,mode:", "request", "")),
    ("x,token:a,token:b", StreamId("x", "request", "b")),
    ("", StreamId("", "request", "")),
    # legacy form
    ("#!:r=bla,m=publish,token=foobar", StreamId("bla", "publish", "foobar")),
    ("#!:r=bla,m=request", StreamId("bla", "request", "")),
    ("#!:m=publish,junk,r=x,unknown=1", StreamId("x", "publish", "")),
    ("#!:", StreamId("", "", "")),
    ("#!:token=foo,bar", StreamId("", "", "foo")),
    ("#!:key=value", StreamId("", "", "")),
])
def test_parse_stream_id_as_core(text: str, expected: StreamId) -> None:
    assert parse_stream_id(text) == expected


@pytest.mark.parametrize(("text", "token", "status", "message"), [
    ("", "", "INVALID", "stream resource not provided"),
    (",mode:publish", "", "INVALID", "stream resource not provided"),
    ("#!:m=publish", "", "INVALID", "stream resource not provided"),
    ("x,mode:play", "", "INVALID", "invalid connection mode"),
    ("#!:r=x", "", "INVALID", "invalid connection mode"),  # legacy: no default mode
    ("x", "secret", "FORBIDDEN", "token required"),
    ("x,token:wrong", "secret", "FORBIDDEN", "invalid token"),
    ("x" * 600, "", "INVALID", "stream id too long"),
])
def test_check_stream_id_refuses(text: str, token: str, status: str, message: str) -> None:
    with pytest.raises(StreamIdRefused) as info:
        check_stream_id(text, token=token)
    assert (info.value.status, info.value.message) == (status, message)


def test_check_stream_id_accepts_the_right_token() -> None:
    assert check_stream_id("x,mode:publish,token:secret", token="secret") == StreamId(
        "x", "publish", "secret")
    assert check_stream_id("x,token:anything", token="") == StreamId("x", "request", "anything")
