"""Shared fixtures: the FFmpeg binary (leak checks live in ``tests/helpers/leaks.py``)."""

from __future__ import annotations

import os

import pytest

from trio_core.ffmpeg_binary import find_ffmpeg


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Absolute path of the FFmpeg binary used by the integration tests."""
    return find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", ""))


