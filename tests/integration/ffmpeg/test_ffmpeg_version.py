"""The server's start-up version check runs the real FFmpeg (through the one spawn path) and
warns when the Restreamer UI would show it as incompatible."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trio_core.ffmpeg.binary import check_version, parse_version


def fake_ffmpeg(tmp_path: Path, banner: str) -> str:
    path = tmp_path / "ffmpeg"
    path.write_text(f"#!/bin/sh\necho '{banner}'\n")
    path.chmod(0o755)
    return str(path)


async def test_the_bundled_ffmpeg_is_checked(ffmpeg: str, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    caplog.set_level(logging.WARNING, logger="trio_core.ffmpeg.binary")
    version = await check_version(ffmpeg)
    assert version is not None
    outside = version < (5, 1, 0) or (6, 0, 0) <= version < (6, 1, 0) or version >= (7, 0, 0)
    warned = [r for r in caplog.records if "Restreamer UI accepts" in r.getMessage()]
    assert bool(warned) is outside


async def test_debian_5_1_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trio_core.ffmpeg.binary")
    banner = "ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers"
    assert await check_version(fake_ffmpeg(tmp_path, banner)) == parse_version(banner)
    assert caplog.records == []


async def test_an_unaccepted_or_unknown_version_is_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trio_core.ffmpeg.binary")
    assert await check_version(fake_ffmpeg(tmp_path, "ffmpeg version 7.1 Copyright")) == (7, 1, 0)
    assert "FFmpeg 7.1.0" in caplog.records[-1].getMessage()
    assert "^5.1 || ^6.1" in caplog.records[-1].getMessage()
    assert await check_version(str(tmp_path / "missing")) is None
    assert "cannot tell the version" in caplog.records[-1].getMessage()
