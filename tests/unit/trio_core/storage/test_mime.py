"""trio_core.storage.mime: Core's content types by extension, per-mount defaults."""

from __future__ import annotations

from trio_core.storage.mime import DISK_DEFAULT, MEM_DEFAULT, content_type


def test_types_by_extension_case_insensitive_else_the_default() -> None:
    assert content_type("/live/main.M3U8", MEM_DEFAULT) == "application/vnd.apple.mpegurl"
    assert content_type("seg_1.ts", MEM_DEFAULT) == "video/MP2T"
    assert content_type("init.m4s", DISK_DEFAULT) == "video/iso.segment"
    assert content_type("/blob", MEM_DEFAULT) == "application/data"
    assert content_type("/index", DISK_DEFAULT) == "text/html"
