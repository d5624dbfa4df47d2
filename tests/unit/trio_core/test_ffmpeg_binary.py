"""trio_core.ffmpeg_binary: a configured binary must be executable; otherwise PATH, then the
imageio-ffmpeg wheel's binary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trio_core.ffmpeg_binary import FFmpegNotFound, find_ffmpeg


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
