"""What an input carries, found by FFmpeg itself (there may be no ffprobe).

``parse_ffmpeg_streams`` is sans-IO: it reads the ``Stream #i:j: Video: …`` /
``Audio: …`` lines FFmpeg prints for its inputs (through :mod:`.streams`), and the
``showinfo`` lines of the first decoded video frames (``type:B`` → the stream has B-frames,
``i:T``/``i:B`` → interlaced), which a browser cannot play over RTP. :func:`probe_inputs` runs
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

from trio_core.ffmpeg.child import DEVNULL, PidRecorder, run_process
from trio_core.ffmpeg.streams import parse_stream

__all__ = ["AudioStream", "MediaInfo", "VideoStream", "parse_ffmpeg_streams", "probe_inputs"]

_SHOWINFO = re.compile(r"\bi:([PTB?])\s+iskey:\d\s+type:([IPBSH?])")
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
        parsed = parse_stream(line)
        if parsed is None:
            continue
        if parsed.kind == "video" and video is None:
            video = VideoStream(parsed.file, parsed.index, parsed.codec.lower(),
                                parsed.profile or None, parsed.pix_fmt or None,
                                parsed.width or None, parsed.height or None, parsed.fps,
                                interlaced=True if parsed.interlaced else None)
        elif parsed.kind == "audio" and audio is None:
            audio = AudioStream(parsed.file, parsed.index, parsed.codec.lower(),
                                parsed.sample_rate, parsed.channels or None)
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
