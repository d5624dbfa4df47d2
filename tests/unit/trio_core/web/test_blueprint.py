"""trio_core.web.blueprint: recorded routes, method shortcuts, Flask's prefix joining."""

from __future__ import annotations

import pytest

from trio_core.web.blueprint import Blueprint, join_rule


def test_records_and_shortcuts() -> None:
    bp = Blueprint("b", __name__)

    @bp.get("/a")
    async def a() -> str:
        return "a"

    @bp.route("/b", methods=["put", "DELETE"], endpoint="bee", provide_automatic_options=False)
    async def b() -> str:
        return "b"

    assert [(r.rule, r.endpoint, r.methods, r.automatic_options) for r in bp.records] == [
        ("/a", "a", ["GET"], None), ("/b", "bee", ["PUT", "DELETE"], False)]
    with pytest.raises(ValueError):
        Blueprint("a.b")
    with pytest.raises(ValueError):
        bp.route("/c", endpoint="x.y")(a)


def test_join_rule() -> None:
    assert join_rule(None, "/x") == "/x"
    assert join_rule("/api/", "/x") == "/api/x"
    assert join_rule("/api", "") == "/api"
