"""trio_core.http.errors: bounded JSON parsing answers Core's 400 with a plain reason."""

from __future__ import annotations

import pytest

from trio_core.http.errors import MAX_INT_DIGITS, MAX_JSON_DEPTH, ApiError, parse_json


def test_parse_json_accepts_plain_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "request doesn't contain any content"),
    (b"\xff\xfe", "request body is not UTF-8"),
    (b'{"a": NaN}', "numbers must be finite"),
    (b'{"a": 1e999}', "numbers must be finite"),
    (b'{"a": ' + b"1" * (MAX_INT_DIGITS + 1) + b"}", f"more than {MAX_INT_DIGITS} digits"),
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), f"deeper than {MAX_JSON_DEPTH}"),
    (b'{"a": }', "Expecting value at line 1, character 7"),
])
def test_parse_json_refuses_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(body)
    assert info.value.status == 400 and info.value.message == "Invalid JSON"
    assert len(info.value.details) == 1 and reason in info.value.details[0]


def test_api_error_details_are_a_list() -> None:
    assert ApiError(404, "Not found", "x").details == ["x"]
    assert ApiError(400, "Bad", ["a", "b"]).details == ["a", "b"]
    assert ApiError(500, "Oops").details == [] and ApiError(500, "Oops").headers == {}
