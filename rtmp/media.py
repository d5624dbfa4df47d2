"""FLV tag bodies as carried by RTMP audio (8) and video (9) messages, incl. Enhanced RTMP.

:func:`parse_video` / :func:`parse_audio` classify a message body without copying it: codec,
whether it is a sequence header (decoder configuration: AVCDecoderConfigurationRecord,
AudioSpecificConfig, hvcC/av1C/vpcC), a keyframe, or end of sequence. Legacy FLV video
(codec id in the low nibble: 7 = AVC, 12 = HEVC as several encoders send it) and Enhanced
RTMP (``IsExHeader`` bit, packet type, FourCC ``hvc1``/``av01``/``vp09``/``avc1``) are both
understood; media is passed through unchanged. Audio: AAC packet type 0 is its sequence
header; Enhanced RTMP audio (sound format 9, FourCC ``Opus``/``mp4a``/…) packet type 0 too.
Empty bodies raise :class:`~rtmp.errors.RtmpError` (``media-empty``). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RtmpError

__all__ = ["AudioInfo", "VideoInfo", "parse_audio", "parse_video"]

# legacy FLV video codec ids
_CODEC_NAMES = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2", 7: "h264", 12: "hevc", 13: "av1"}
_FOURCC_NAMES = {b"avc1": "h264", b"hvc1": "hevc", b"av01": "av1", b"vp09": "vp9", b"vp08": "vp8"}
_AUDIO_NAMES = {0: "pcm", 1: "adpcm", 2: "mp3", 3: "pcm_le", 7: "alaw", 8: "mulaw", 10: "aac", 11: "speex", 14: "mp3_8k"}
_AUDIO_FOURCC = {b"Opus": "opus", b"mp4a": "aac", b"fLaC": "flac", b".mp3": "mp3", b"ac-3": "ac3", b"ec-3": "eac3"}

# Enhanced RTMP video packet types
EX_SEQUENCE_START, EX_CODED_FRAMES, EX_SEQUENCE_END, EX_CODED_FRAMES_X = 0, 1, 2, 3
EX_METADATA, EX_MPEG2TS_SEQUENCE_START, EX_MULTITRACK = 4, 5, 6


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str  # "h264", "hevc", "av1", "vp9", … or "unknown"
    keyframe: bool  # frame type 1 (a random access point)
    sequence_header: bool  # decoder configuration record
    sequence_end: bool
    enhanced: bool  # Enhanced RTMP (FourCC) header
    command: bool  # frame type 5 (video info/command frame, not a picture)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    codec: str
    sequence_header: bool


def parse_video(body: bytes) -> VideoInfo:
    """Classify a video message body (raises RtmpError ``media-empty`` / ``media-short``)."""
    if not body:
        raise RtmpError("media-empty", "empty video message")
    b0 = body[0]
    frame_type = (b0 >> 4) & 0x07
    if b0 & 0x80:  # Enhanced RTMP: IsExHeader
        packet_type = b0 & 0x0F
        if len(body) < 5:
            raise RtmpError("media-short", "enhanced video header shorter than 5 bytes")
        fourcc = bytes(body[1:5])
        codec = _FOURCC_NAMES.get(fourcc, "unknown")
        if packet_type == EX_MULTITRACK:
            codec = "multitrack"
        seq = packet_type in (EX_SEQUENCE_START, EX_MPEG2TS_SEQUENCE_START)
        command = frame_type == 5 or packet_type == EX_METADATA
        return VideoInfo(codec, frame_type == 1 and not seq and not command, seq,
                         packet_type == EX_SEQUENCE_END, True, command)
    codec_id = b0 & 0x0F
    codec = _CODEC_NAMES.get(codec_id, "unknown")
    if codec_id in (7, 12, 13):  # AVC-style packet type byte follows
        if len(body) < 2:
            raise RtmpError("media-short", "AVC video message without a packet type")
        packet_type = body[1]
        seq, end = packet_type == 0, packet_type == 2
    else:
        seq = end = False
    command = frame_type == 5
    return VideoInfo(codec, frame_type == 1 and not seq and not end and not command, seq, end,
                     False, command)


def parse_audio(body: bytes) -> AudioInfo:
    """Classify an audio message body (raises RtmpError ``media-empty`` / ``media-short``)."""
    if not body:
        raise RtmpError("media-empty", "empty audio message")
    fmt = body[0] >> 4
    if fmt == 9:  # Enhanced RTMP audio: packet type in the low nibble, FourCC follows
        if len(body) < 5:
            raise RtmpError("media-short", "enhanced audio header shorter than 5 bytes")
        return AudioInfo(_AUDIO_FOURCC.get(bytes(body[1:5]), "unknown"), body[0] & 0x0F == 0)
    if fmt == 10:
        if len(body) < 2:
            raise RtmpError("media-short", "AAC audio message without a packet type")
        return AudioInfo("aac", body[1] == 0)
    return AudioInfo(_AUDIO_NAMES.get(fmt, "unknown"), False)
