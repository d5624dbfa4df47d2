"""trio_core.ffmpeg.binary: the version the Restreamer UI accepts (``^5.1 || ^6.1``).

trio_core.ffmpeg.binary: a configured binary must be executable; otherwise PATH, then the
imageio-ffmpeg wheel's binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trio_core.ffmpeg.binary import (
    UI_VERSION_RANGE,
    FFmpegNotFound,
    find_ffmpeg,
    parse_version,
    ui_accepts,
)


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


def test_configured_paths_and_names(tmp_path: Path) -> None:
    exe = tmp_path / "my-ffmpeg"
    exe.write_text("#!/bin/sh\n")
    with pytest.raises(FFmpegNotFound, match="is not an executable"):
        find_ffmpeg(str(exe))
    exe.chmod(0o755)
    assert find_ffmpeg(str(exe)) == str(exe)
    with pytest.raises(FFmpegNotFound):
        find_ffmpeg("no-such-ffmpeg-anywhere")
    assert find_ffmpeg("sh") == os.path.abspath(str(shutil.which("sh")))  # a name: on PATH


def test_the_default_is_an_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH: the wheel's binary
    found = find_ffmpeg()
    assert os.path.isabs(found) and os.access(found, os.X_OK) and "ffmpeg" in found
