"""What an input carries, found by FFmpeg itself (there may be no ffprobe).

``parse_ffmpeg_streams`` is sans-IO: it reads the ``Stream #i:j: Video: …`` /
``Audio: …`` lines FFmpeg prints for its inputs, and the ``showinfo`` lines of the first
decoded video frames (``type:B`` → the stream has B-frames, ``i:T``/``i:B`` → interlaced),
which a browser cannot play over RTP. :func:`probe_inputs` runs
``ffmpeg -hide_banner <input options> -i <address> … -frames:v N -vf showinfo -f null -``
with a timeout and parses the result.

Inputs that cannot be probed without taking them away from the process (listening
sockets: ``-listen 1``, ``mode=listener``) or do not answer within the timeout give
``None``: the caller then transcodes both tracks, which works for any input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import trio

from .child import DEVNULL, PidRecorder, run_process
from .progress import CHANNEL_LAYOUTS, split_top

__all__ = ["AudioStream", "MediaInfo", "VideoStream", "parse_ffmpeg_streams", "probe_inputs"]

_STREAM = re.compile(r"^\s*Stream #(\d+):(\d+)[^:]*:\s*(Video|Audio):\s*(.*)$")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)\s+fps\b")
_RATE = re.compile(r"(\d+)\s+Hz\b")
_SHOWINFO = re.compile(r"\bi:([PTB?])\s+iskey:\d\s+type:([IPBSH?])")
_FIELD_ORDER = ("top first", "bottom first", "top coded first", "bottom coded first")
#: Decoded video frames inspected for B-frames and interlacing.
PROBE_FRAMES = 48
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
    #: B-frames seen among the first decoded frames (None: no frame was decoded)
    b_frames: bool | None = None
    #: interlaced (field order in the stream description, or interlaced frames decoded)
    interlaced: bool | None = None
    #: frames the B-frame/interlace check saw
    frames_checked: int = 0


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
            pix_detail = parts[1].lower() if len(parts) > 1 else ""
            size = _SIZE.search(rest)
            fps = _FPS.search(rest)
            video = VideoStream(inp, idx, codec, profile, pix_fmt or None,
                                int(size[1]) if size else None, int(size[2]) if size else None,
                                float(fps[1]) if fps else None,
                                interlaced=True if any(f in pix_detail for f in _FIELD_ORDER)
                                else None)
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
    if video is not None:
        frames = _SHOWINFO.findall(stderr)
        if frames:
            interlaced = video.interlaced or any(f in ("T", "B") for f, _ in frames)
            video = replace(video, b_frames=any(t == "B" for _, t in frames),
                            interlaced=interlaced, frames_checked=len(frames))
    return MediaInfo(video, audio)


class InputLike(Protocol):
    address: str
    options: list[str]


def _unprobeable(inp: InputLike) -> bool:
    opts = " ".join(inp.options)
    return "-listen" in opts or "listener" in inp.address or "listen=1" in inp.address


def _without_pacing(options: Sequence[str]) -> list[str]:
    """Input options minus real-time pacing (``-re``, ``-readrate[_initial_burst] N``)."""
    out: list[str] = []
    skip = False
    for opt in options:
        if skip:
            skip = False
        elif opt == "-re":
            continue
        elif opt in ("-readrate", "-readrate_initial_burst", "-readrate_catchup"):
            skip = True
        else:
            out.append(opt)
    return out


async def probe_inputs(ffmpeg: str, inputs: Sequence[InputLike], *, timeout: float = 10.0,
                       record: PidRecorder | None = None, record_id: str = ""
                       ) -> MediaInfo | None:
    """Describe ``inputs`` by running FFmpeg on them; None when they cannot be probed.

    FFmpeg is a :func:`~trio_core.ffmpeg.child.run_process` child (recorded in ``record`` as
    ``record_id`` while it runs). Cancellation: the FFmpeg child is killed and reaped when the
    caller is cancelled or the timeout expires.
    """
    if not inputs or any(_unprobeable(i) for i in inputs):
        return None
    argv = [ffmpeg, "-hide_banner", "-nostdin"]
    for inp in inputs:
        argv += [*_without_pacing(inp.options), "-i", inp.address]
    # decode a few frames of the (default) video stream: B-frames, interlacing
    argv += ["-an", "-sn", "-dn", "-frames:v", str(PROBE_FRAMES), "-vf", "showinfo",
             "-f", "null", "-"]
    with trio.move_on_after(timeout):
        proc = await run_process(argv, stdin=DEVNULL, capture_stdout=True, capture_stderr=True,
                                 record=record, record_id=record_id)
        text = proc.stderr.decode("utf-8", "replace")
        info = parse_ffmpeg_streams(text)
        if info.video is None and info.audio is None:
            return None
        return info
    return None
