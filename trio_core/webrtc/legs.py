"""The FFmpeg output legs that feed a process's WebRTC Source (``build_rtp_outputs``).

One ``-f rtp`` leg per track to the Source's loopback port (``pkt_size=1200`` so packets
fit a WebRTC MTU after SRTP), with the process's payload types, plus ``-sdp_file`` (a global
FFmpeg option, given once with the first leg) so the Source learns the codec parameters.

Choices (see ``DESIGN.md``):

* video is **copied** when it is H264 Constrained Baseline/Baseline/Main, 8-bit yuv420p,
  progressive, and the probe decoded frames without B-frames (Baseline cannot have any), and
  ``force_transcode`` is off, with ``h264_mp4toannexb`` so SPS/PPS travel in-band before
  each IDR (MP4/RTMP carry them out of band). Anything else is **transcoded**: B-frames
  (Chromium decodes a few frames of 165 and floods PLIs), Main whose frames could not be
  checked, High/4:4:4/10-bit (browsers offer no High), interlaced video, other codecs,
  raw/lavfi video, unknown input — to libx264 ``yuv420p`` Constrained Baseline, no
  B-frames, zerolatency, GOP of 2 s. VP8 is copied as it is (every browser decodes it; a
  viewer that offers no VP8 then gets 406). Each decision and its reason is in
  ``decisions``.
* audio is copied only when it is already Opus (and not ``force_transcode``), else libopus
  48 kHz stereo.
* a track the input does not have gets no leg (video-only and audio-only inputs work);
  when the input could not be probed both legs use optional maps (``-map 0:v:0?``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trio_core.ffmpeg.mediainfo import MediaInfo, VideoStream

__all__ = ["RtpLegs", "build_rtp_outputs", "rtp_url"]

COPYABLE_H264_PROFILES = {"constrained baseline", "baseline", "main"}
#: pixel formats a browser's H264 decoder takes (8-bit 4:2:0)
COPYABLE_PIX_FMTS = {"yuv420p", "yuvj420p"}
GOP_SECONDS = 2
VIDEO_BITRATE = "2M"
AUDIO_BITRATE = "96k"


@dataclass
class RtpLegs:
    """FFmpeg output legs (``(options, address)``) and the decisions, for the process log."""

    outputs: list[tuple[list[str], str]] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


def rtp_url(port: int) -> str:
    return f"udp://127.0.0.1:{port}?pkt_size=1200"


def _vp8_options(video: VideoStream | None, force_transcode: bool, why: str
                 ) -> tuple[list[str], str]:
    if video is not None and video.codec == "vp8" and not force_transcode:
        return ["-c:v", "copy"], "video vp8 copied"
    fps = video.fps if video is not None and video.fps else 25.0
    gop = max(1, round(GOP_SECONDS * fps))
    options = [
        "-c:v", "libvpx", "-pix_fmt", "yuv420p", "-deadline", "realtime", "-cpu-used", "8",
        "-lag-in-frames", "0", "-auto-alt-ref", "0", "-error-resilient", "1",
        "-g", str(gop), "-keyint_min", str(gop),
        "-b:v", VIDEO_BITRATE, "-maxrate", VIDEO_BITRATE, "-bufsize", "1M",
    ]
    return options, f"video → libvpx VP8, GOP {gop} frames ({why})"


def _video_options(info: MediaInfo | None, force_transcode: bool, codec: str | None = None
                   ) -> tuple[list[str], str]:
    """The options of a video leg producing ``codec`` ("h264", "vp8"; None = automatic:
    VP8 copied, else H264 copied or transcoded) and the decision for the log."""
    video = info.video if info is not None else None
    why = ""
    if codec == "vp8":
        return _vp8_options(video, force_transcode, "webrtc.video_codecs")
    if codec is None and video is not None and video.codec == "vp8" and not force_transcode:
        # every browser decodes VP8; FFmpeg's RTP muxer packetizes it (RFC 7741)
        return ["-c:v", "copy"], "video vp8 copied (browsers decode VP8; no H264 for them)"
    if video is not None and video.codec == "h264" and not force_transcode:
        why = _not_copyable(video)
        if not why:
            checked = (f", no B-frames in {video.frames_checked} frames"
                       if video.frames_checked else "")
            return (["-c:v", "copy", "-bsf:v", "h264_mp4toannexb"],
                    f"video h264 ({video.profile}, {video.pix_fmt}{checked}) copied, "
                    "h264_mp4toannexb puts SPS/PPS in-band")
    fps = video.fps if video is not None and video.fps else 25.0
    gop = max(1, round(GOP_SECONDS * fps))
    options = [
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-profile:v", "baseline",
        "-bf", "0", "-tune", "zerolatency", "-preset", "veryfast",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-b:v", VIDEO_BITRATE, "-maxrate", VIDEO_BITRATE, "-bufsize", "1M",
    ]
    if video is None:
        why = "input not probed"
    elif force_transcode:
        why = "webrtc.force_transcode"
    elif video.codec != "h264":
        why = f"{video.codec} is not H264" + (" (webrtc.video_codecs)" if codec else "")
    return options, f"video → libx264 baseline, GOP {gop} frames, no B-frames ({why})"


def _not_copyable(video: VideoStream) -> str:
    """Why this H264 stream cannot be sent to browsers as it is ("" when it can)."""
    profile = (video.profile or "").lower()
    label = f"h264 {video.profile or '(unknown profile)'}"
    if profile not in COPYABLE_H264_PROFILES:
        return f"{label} is not playable in every browser (they offer no High/4:4:4/10-bit)"
    if (video.pix_fmt or "yuv420p") not in COPYABLE_PIX_FMTS:
        return f"{label} in {video.pix_fmt}: browsers decode 8-bit 4:2:0 only"
    if video.interlaced:
        return f"{label} is interlaced: browsers show field artefacts"
    if video.b_frames:
        return (f"{label} has B-frames (seen in the first {video.frames_checked} frames): "
                "browsers play them badly over RTP")
    if video.b_frames is None and profile == "main":
        return f"{label} may have B-frames and no frame could be checked"
    return ""


def _audio_options(info: MediaInfo | None, force_transcode: bool) -> tuple[list[str], str]:
    audio = info.audio if info is not None else None
    if audio is not None and audio.codec == "opus" and not force_transcode:
        return ["-c:a", "copy"], "audio opus copied"
    why = "input not probed" if audio is None else (
        "webrtc.force_transcode" if force_transcode and audio.codec == "opus"
        else f"browsers do not decode {audio.codec} over WebRTC")
    return (["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", AUDIO_BITRATE],
            f"audio → libopus 48 kHz stereo ({why})")


def build_rtp_outputs(info: MediaInfo | None, *, video_port: int | None,
                      audio_port: int | None, video_pt: int, audio_pt: int,
                      force_transcode: bool, sdp_path: str,
                      video_codecs: list[str] | None = None,
                      video2_port: int | None = None) -> RtpLegs:
    """The RTP legs for the tracks ``info`` says the inputs have (and a port exists for).

    ``video_codecs`` (``webrtc.video_codecs``) fixes the codec of the video leg (its first
    entry) and, with a second entry and ``video2_port``, adds a second video leg in that
    codec — after the audio leg, so that FFmpeg's SDP lists it as the second video track.
    """
    codecs = list(video_codecs or [])
    legs = RtpLegs()
    want_video = video_port is not None and (info is None or info.video is not None)
    want_audio = audio_port is not None and (info is None or info.audio is not None)
    if info is not None and info.video is None:
        legs.decisions.append("no video in the inputs: audio only")
    if info is not None and info.audio is None:
        legs.decisions.append("no audio in the inputs: video only")
    if want_video:
        options, note = _video_options(info, force_transcode, codecs[0] if codecs else None)
        source = (f"{info.video.input_index}:{info.video.stream_index}"  # type: ignore[union-attr]
                  if info is not None else "0:v:0?")
        legs.outputs.append((["-map", source, *options, "-an", "-payload_type", str(video_pt),
                              "-f", "rtp"], rtp_url(video_port)))  # type: ignore[arg-type]
        legs.decisions.append(note)
    if want_audio:
        options, note = _audio_options(info, force_transcode)
        source = (f"{info.audio.input_index}:{info.audio.stream_index}"  # type: ignore[union-attr]
                  if info is not None else "0:a:0?")
        legs.outputs.append((["-map", source, *options, "-vn", "-payload_type", str(audio_pt),
                              "-f", "rtp"], rtp_url(audio_port)))  # type: ignore[arg-type]
        legs.decisions.append(note)
    if want_video and len(codecs) > 1 and video2_port is not None:
        options, note = _video_options(info, force_transcode, codecs[1])
        source = (f"{info.video.input_index}:{info.video.stream_index}"  # type: ignore[union-attr]
                  if info is not None else "0:v:0?")
        pt = next(p for p in range(96, 128) if p not in (video_pt, audio_pt))
        legs.outputs.append((["-map", source, *options, "-an", "-payload_type", str(pt),
                              "-f", "rtp"], rtp_url(video2_port)))
        legs.decisions.append("second " + note)
    if legs.outputs:
        first_options, first_address = legs.outputs[0]
        legs.outputs[0] = (["-sdp_file", sdp_path, *first_options], first_address)
    return legs
