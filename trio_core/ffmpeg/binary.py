"""Locating the FFmpeg binary: configured path, else ``ffmpeg`` on PATH, else imageio-ffmpeg's;
and whether its version is one the Restreamer UI accepts.

:func:`find_ffmpeg` is synchronous (a PATH lookup). The version check is split into the pure
:func:`parse_version` / :func:`ui_accepts` and :func:`check_version`, which runs
``ffmpeg -version`` through the one spawn path (:func:`~trio_core.ffmpeg.child.run_process`,
bounded by :data:`VERSION_TIMEOUT`; cancelling it kills and reaps FFmpeg first) and logs a
warning when the UI would show the FFmpeg as incompatible. The server calls it once at start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import trio

from trio_core.ffmpeg.child import DEVNULL, PidRecorder, run_process

log = logging.getLogger(__name__)

#: the FFmpeg versions datarhei's Restreamer UI accepts (a semver range, as the UI states it)
UI_VERSION_RANGE = "^5.1 || ^6.1"
VERSION_TIMEOUT = 10.0
_VERSION_RE = re.compile(r"^ffmpeg version n?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", re.M)


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


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` from ``ffmpeg -version`` output; None for builds without one
    (``ffmpeg version N-112345-g…`` git snapshots)."""
    m = _VERSION_RE.search(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def ui_accepts(version: tuple[int, int, int]) -> bool:
    """Whether ``version`` satisfies :data:`UI_VERSION_RANGE` (``^5.1 || ^6.1``: 5.1 <= v < 6
    or 6.1 <= v < 7)."""
    return (5, 1, 0) <= version < (6, 0, 0) or (6, 1, 0) <= version < (7, 0, 0)


async def check_version(binary: str, *, record: PidRecorder | None = None
                        ) -> tuple[int, int, int] | None:
    """Run ``binary -version``; log a warning unless the Restreamer UI accepts the version.
    Returns the version (None when it cannot be told). Never raises for a failing FFmpeg."""
    text = ""
    try:
        with trio.move_on_after(VERSION_TIMEOUT):
            result = await run_process([binary, "-version"], stdin=DEVNULL, capture_stdout=True,
                                       capture_stderr=True, record=record,
                                       record_id="ffmpeg -version")
            assert result.stdout is not None and result.stderr is not None
            text = (result.stdout + result.stderr).decode("utf-8", "replace")
    except OSError as exc:
        text = ""
        log.warning("cannot run %s -version: %s", binary, exc)
    version = parse_version(text)
    if version is None:
        log.warning("cannot tell the version of FFmpeg %s; the Restreamer UI accepts only %s",
                    binary, UI_VERSION_RANGE)
    elif not ui_accepts(version):
        log.warning("FFmpeg %s (%s) is outside the versions the Restreamer UI accepts (%s): the "
                    "UI shows it as incompatible. Install one (Debian's apt-get install ffmpeg "
                    "gives 5.1, found first on PATH) or set ffmpeg.binary",
                    ".".join(map(str, version)), binary, UI_VERSION_RANGE)
    return version
