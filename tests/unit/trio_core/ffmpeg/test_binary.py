"""trio_core.ffmpeg.binary: the version the Restreamer UI accepts (``^5.1 || ^6.1``)."""

from __future__ import annotations

import pytest

from trio_core.ffmpeg.binary import UI_VERSION_RANGE, parse_version, ui_accepts


@pytest.mark.parametrize(("banner", "version"), [
    ("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers", (5, 1, 6)),
    ("ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers", (6, 1, 1)),
    ("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021", (4, 4, 2)),
    ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright (c) 2000-2026", (9, 0, 2)),
    ("ffmpeg version 7.1 Copyright (c) 2000-2024 the FFmpeg developers", (7, 1, 0)),
    ("garbage first\nffmpeg version 6.0 Copyright", (6, 0, 0)),
    ("ffmpeg version N-112233-gdeadbeef Copyright (c) 2000-2024", None),
    ("", None),
])
def test_parse_version(banner: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(banner) == version


@pytest.mark.parametrize(("version", "accepted"), [
    ((5, 0, 3), False), ((5, 1, 0), True), ((5, 1, 6), True), ((5, 2, 0), True),
    ((6, 0, 0), False), ((6, 0, 1), False), ((6, 1, 0), True), ((6, 1, 2), True),
    ((6, 2, 0), True), ((7, 0, 0), False), ((7, 1, 0), False), ((9, 0, 2), False),
    ((4, 4, 2), False),
])
def test_ui_accepts_the_restreamer_range(version: tuple[int, int, int], accepted: bool) -> None:
    assert UI_VERSION_RANGE == "^5.1 || ^6.1"
    assert ui_accepts(version) is accepted
