"""trio_core.ffmpeg.mediainfo: FFmpeg's stream lines and showinfo parsed into what the legs need."""

from __future__ import annotations

from trio_core.ffmpeg.mediainfo import parse_ffmpeg_streams

LAVFI_STDERR = """Input #0, lavfi, from 'testsrc2=size=320x240:rate=25':
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: wrapped_avframe, yuv420p, 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 25 tbn
Input #1, lavfi, from 'sine=frequency=440:sample_rate=48000':
  Stream #1:0: Audio: pcm_s16le, 48000 Hz, mono, s16, 768 kb/s
At least one output file must be specified
"""


MP4_STDERR = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'h.mp4':
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 58 kb/s, 29.97 fps, 30 tbr, 12800 tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 70 kb/s (default)
"""


def test_parse_lavfi_two_inputs() -> None:
    info = parse_ffmpeg_streams(LAVFI_STDERR)
    assert info.video is not None and info.audio is not None
    assert (info.video.input_index, info.video.codec, info.video.pix_fmt) == (0, "wrapped_avframe",
                                                                             "yuv420p")
    assert (info.video.width, info.video.height, info.video.fps) == (320, 240, 25.0)
    assert (info.audio.input_index, info.audio.codec, info.audio.sample_rate,
            info.audio.channels) == (1, "pcm_s16le", 48000, 1)


def test_parse_mp4_high_aac() -> None:
    info = parse_ffmpeg_streams(MP4_STDERR)
    assert info.video is not None and info.video.profile == "High"
    assert info.video.fps == 29.97
    assert info.audio is not None and (info.audio.codec, info.audio.channels) == ("aac", 2)
    assert parse_ffmpeg_streams("garbage\nStream #x: nothing").video is None


def test_parse_showinfo_and_field_order() -> None:
    text = (
        "  Stream #0:0[0x1](und): Video: h264 (Main) (avc1 / 0x31637661), yuv420p(tv, "
        "bt709, top first), 1920x1080, 25 fps\n"
        "[Parsed_showinfo_0 @ 0x1] n:   0 pts: 0 fmt:yuv420p i:T iskey:1 type:I checksum:1\n"
        "[Parsed_showinfo_0 @ 0x1] n:   1 pts: 1 fmt:yuv420p i:T iskey:0 type:P checksum:2\n"
    )
    video = parse_ffmpeg_streams(text).video
    assert video is not None
    assert (video.interlaced, video.b_frames, video.frames_checked) == (True, False, 2)
    flat = text.replace("top first", "progressive").replace("i:T", "i:P")
    progressive = parse_ffmpeg_streams(
        flat + flat.splitlines()[2].replace("type:P", "type:B") + "\n").video
    assert progressive is not None
    assert (progressive.interlaced, progressive.b_frames) == (False, True)
    unknown = parse_ffmpeg_streams(text.splitlines()[0]).video
    assert unknown is not None and unknown.b_frames is None and unknown.frames_checked == 0
