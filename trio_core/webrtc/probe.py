"""What an input carries, found by FFmpeg itself (there may be no ffprobe).

``parse_ffmpeg_streams`` is sans-IO: it reads the ``Stream #i:j: Video: …`` /
``Audio: …`` lines FFmpeg prints for its inputs. :func:`probe_inputs` runs
``ffmpeg -hide_banner <input options> -i <address> …`` (no output: FFmpeg prints the input
description and exits) with a timeout and parses the result.

Inputs that cannot be probed without taking them away from the process (listening
sockets: ``-listen 1``, ``mode=listener``) or do not answer within the timeout give
``None``: the caller then transcodes both tracks, which works for any input.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from ..child import run_process
from ..progress import CHANNEL_LAYOUTS, split_top

__all__ = ["AudioStream", "MediaInfo", "VideoStream", "parse_ffmpeg_streams", "probe_inputs"]

_STREAM = re.compile(r"^\s*Stream #(\d+):(\d+)[^:]*:\s*(Video|Audio):\s*(.*)$")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)\s+fps\b")
_RATE = re.compile(r"(\d+)\s+Hz\b")
@dataclass(frozen=True)
class VideoStream:
    input_index: int
    stream_index: int
    codec: str  # "h264", "hevc", "vp8", "wrapped_avframe", "rawvideo", …
    profile: str | None  # "High", "Main", "Constrained Baseline", … (None when not given)
    pix_fmt: str | None
    width: int | None
    height: int | None
    fps: float | None


@dataclass(frozen=True)
class AudioStream:
    input_index: int
    stream_index: int
    codec: str  # "aac", "opus", "pcm_s16le", …
    sample_rate: int | None
    channels: int | None


@dataclass(frozen=True)
class MediaInfo:
    """The first video and the first audio stream over all inputs (None when absent)."""

    video: VideoStream | None
    audio: AudioStream | None


def parse_ffmpeg_streams(stderr: str) -> MediaInfo:
    """Parse FFmpeg's input description (sans-IO). Unknown lines are ignored."""
    video: VideoStream | None = None
    audio: AudioStream | None = None
    for line in stderr.splitlines():
        m = _STREAM.match(line)
        if not m:
            continue
        inp, idx, kind, rest = int(m[1]), int(m[2]), m[3], m[4]
        parts = split_top(rest)
        head = parts[0].split()
        codec = head[0].lower() if head else ""
        profile = None
        pm = re.match(r"^\S+\s+\(([^)]*)\)", parts[0])
        if pm and "/" not in pm[1]:
            profile = pm[1]
        if kind == "Video" and video is None:
            pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else None
            size = _SIZE.search(rest)
            fps = _FPS.search(rest)
            video = VideoStream(inp, idx, codec, profile, pix_fmt or None,
                                int(size[1]) if size else None, int(size[2]) if size else None,
                                float(fps[1]) if fps else None)
        elif kind == "Audio" and audio is None:
            rate = _RATE.search(rest)
            channels = None
            for part in parts[1:]:
                word = part.split("(")[0].strip().lower()
                if word in CHANNEL_LAYOUTS:
                    channels = CHANNEL_LAYOUTS[word]
                    break
                cm = re.match(r"^(\d+)\s+channels", word)
                if cm:
                    channels = int(cm[1])
                    break
            audio = AudioStream(inp, idx, codec, int(rate[1]) if rate else None, channels)
    return MediaInfo(video, audio)


class InputLike(Protocol):
    address: str
    options: list[str]


def _unprobeable(inp: InputLike) -> bool:
    opts = " ".join(inp.options)
    return "-listen" in opts or "listener" in inp.address or "listen=1" in inp.address


async def probe_inputs(ffmpeg: str, inputs: Sequence[InputLike], *, timeout: float = 10.0
                       ) -> MediaInfo | None:
    """Describe ``inputs`` by running FFmpeg on them; None when they cannot be probed.

    Cancellation: the FFmpeg child is killed and reaped when the caller is cancelled or
    the timeout expires.
    """
    if not inputs or any(_unprobeable(i) for i in inputs):
        return None
    argv = [ffmpeg, "-hide_banner", "-nostdin"]
    for inp in inputs:
        opts = [o for o in inp.options if o not in ("-re", "-readrate_initial_burst")]
        argv += [*opts, "-i", inp.address]
    with trio.move_on_after(timeout):
        proc = await run_process(argv, stdin=subprocess.DEVNULL, capture_stdout=True,
                                 capture_stderr=True)
        text = proc.stderr.decode("utf-8", "replace")
        info = parse_ffmpeg_streams(text)
        if info.video is None and info.audio is None:
            return None
        return info
    return None
