"""trio_core.rtmp.paths: request resolution and the rtmp placeholder as Core does them."""

from __future__ import annotations

import pytest

from trio_core.rtmp.paths import placeholder_template, resolve_request


@pytest.mark.parametrize(("app", "name", "required", "path", "token"), [
    ("live", "x", False, "/live/x", ""),
    ("", "x", False, "/x", ""),
    ("live", "x?token=abc", False, "/live/x", ""),
    ("live", "x?token=abc", True, "/live/x", "abc"),
    ("live", "x/abc", True, "/live/x", "abc"),  # last path element
    ("live/x", "abc", True, "/live/x", "abc"),
    ("live", "x", True, "/live", "x"),  # as Core: the last element is taken as the token
    ("a//b/", "/c", False, "/a/b/c", ""),
])
def test_resolve_request_as_core(app: str, name: str, required: bool, path: str, token: str) -> None:
    req = resolve_request(app, name, token_required=required)
    assert (req.path, req.token) == (path, token)


def test_placeholder_template_as_core() -> None:
    assert placeholder_template("", 1935, "/", "") == "rtmp://127.0.0.1:1935/{name}"
    assert placeholder_template("127.0.0.1", 1935, "/live", "t") == "rtmp://127.0.0.1:1935/live/{name}?token=t"
    assert placeholder_template("::1", 5, "/", "") == "rtmp://[::1]:5/{name}"


