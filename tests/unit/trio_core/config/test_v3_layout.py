"""trio_core.config.v3_layout: Core's v3 config document — defaults (fresh random secrets), env var
names, path setting and JSON kinds."""

from __future__ import annotations

from trio_core.config.v3_layout import (
    CORE_CONFIG_VERSION,
    LEAVES,
    core_defaults,
    json_kind,
    set_path,
)


def test_defaults_are_cores_with_fresh_secrets() -> None:
    one, two = core_defaults(), core_defaults()
    assert CORE_CONFIG_VERSION == 3
    assert one["api"]["auth"]["jwt"]["secret"] != two["api"]["auth"]["jwt"]["secret"]
    assert len(one["api"]["auth"]["jwt"]["secret"]) == 32
    assert one["address"] == ":8080" and one["rtmp"]["address"] == ":1935"
    assert one["srt"]["address"] == ":6000"
    assert LEAVES["address"].kind == "str" and LEAVES["address"].env == ()  # CORE_ADDRESS
    assert LEAVES["api.auth.password"].env == ("CORE_API_AUTH_PASSWORD", "RS_PASSWORD")
    assert LEAVES["ffmpeg.max_processes"].env == ("CORE_FFMPEG_MAXPROCESSES",)  # Core's quirk


def test_set_path_and_json_kinds() -> None:
    doc: dict = {"a": 1}
    set_path(doc, "a.b.c", True)
    set_path(doc, "a.b.d", "x")
    assert doc == {"a": {"b": {"c": True, "d": "x"}}}
    assert [json_kind(v) for v in (None, True, 1, 1.5, "s", [], {})] == [
        "null", "bool", "number", "number", "string", "array", "object"]
