"""Locating the FFmpeg binary: configured path, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""

from __future__ import annotations

import os
import shutil


class FFmpegNotFound(RuntimeError):
    """No usable FFmpeg binary could be found."""


def find_ffmpeg(configured: str = "") -> str:
    """Return the absolute path of the FFmpeg binary to run.

    Order: ``configured`` (a path or a name looked up on PATH), then ``ffmpeg`` on PATH, then
    the binary shipped in the ``imageio-ffmpeg`` wheel. Raises FFmpegNotFound with a reason.
    """
    if configured:
        found = shutil.which(configured) if os.sep not in configured else configured
        if found and os.access(found, os.X_OK):
            return os.path.abspath(found)
        raise FFmpegNotFound(f"configured FFmpeg binary {configured!r} is not an executable")
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise FFmpegNotFound("no ffmpeg on PATH and imageio-ffmpeg is not installed") from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FFmpegNotFound(f"no ffmpeg on PATH and imageio-ffmpeg has none: {exc}") from exc
