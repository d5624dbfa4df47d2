"""trio_core.ffmpeg.streams: the one ``Stream #`` parser, and its three users (progress prelude,
API probe, WebRTC input probe) on real FFmpeg stderr.

Every line below was printed by FFmpeg 9.0.2 (the imageio-ffmpeg build) for files made with
it: H.264/AAC in MP4, 10-bit HEVC in Matroska, VP8/Opus in WebM, 5.1 AAC and 5.1(side) PCM
(audio only), interlaced H.264 and MPEG-2/MP2 in MPEG-TS (language tags, ``(default)``
dispositions, SAR/DAR, ``fps``/``tbr``, ``start`` parts), and the output side of a transcode.
"""

from __future__ import annotations

import pytest

from trio_core.ffmpeg.mediainfo import AudioStream, VideoStream, parse_ffmpeg_streams
from trio_core.ffmpeg.probe import parse_probe
from trio_core.ffmpeg.progress import ProgressParser
from trio_core.ffmpeg.streams import (
    Stream,
    StreamMapping,
    channels_of,
    parse_mapping,
    parse_stream,
    split_top,
)

H264 = ("  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), "
        "yuv420p(progressive), 320x240 [SAR 1:1 DAR 4:3], 728 kb/s, 25 fps, 25 tbr, "
        "12800 tbn (default)")
AAC = ("  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, "
       "70 kb/s (default)")
HEVC10 = ("  Stream #1:0: Video: hevc (Main 10), yuv420p10le(tv, progressive), 320x240 "
          "[SAR 1:1 DAR 4:3], 29.97 fps, 29.97 tbr, 1k tbn")
VP8 = ("  Stream #0:0: Video: vp8, yuv420p(tv, progressive), 320x240, SAR 1:1 DAR 4:3, 25 fps, "
       "25 tbr, 1k tbn")
OPUS = "  Stream #0:1: Audio: opus, 48000 Hz, stereo, fltp"
AAC51 = ("  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1, fltp, "
         "320 kb/s (default)")
PCM51SIDE = ("  Stream #0:0: Audio: pcm_s16le ([1][0][0][0] / 0x0001), 48000 Hz, 5.1(side), s16, "
             "4608 kb/s")
INTERLACED = ("  Stream #0:0[0x100]: Video: h264 (Main) ([27][0][0][0] / 0x001B), yuv420p(top first), "
              "720x576 [SAR 16:15 DAR 4:3], 12.50 fps, 12.50 tbr, 90k tbn, start 1.400000")
MPEG2 = ("  Stream #0:0[0x100]: Video: mpeg2video (Main) ([2][0][0][0] / 0x0002), "
         "yuv420p(tv, progressive), 320x240 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 90k tbn, "
         "start 1.440000")
MP2_GER = ("  Stream #0:1[0x101](ger): Audio: mp2 (mp3float) ([3][0][0][0] / 0x0003), 44100 Hz, "
           "mono, fltp, 384 kb/s, start 1.429089")
OUT_H264 = ("  Stream #0:0(fra): Video: h264 (H264 / 0x34363248), yuv420p(tv, progressive), "
            "320x240 [SAR 1:1 DAR 4:3], q=2-31, 25 fps, 1k tbn (default)")
OUT_SWAPPED = ("  Stream #0:0: Video: wrapped_avframe, yuv420p(top coded first (swapped)), 720x576 "
               "[SAR 16:15 DAR 4:3], q=2-31, 200 kb/s, 12.50 fps, 12.50 tbn")


def test_h264_with_id_language_sar_dar_fps_tbr_and_default_disposition() -> None:
    s = parse_stream(H264)
    assert s == Stream(
        file=0, index=0, ident="0x1", language="und", kind="video",
        detail=H264.split("Video: ", 1)[1],
        parts=("h264 (Constrained Baseline) (avc1 / 0x31637661)", "yuv420p(progressive)",
               "320x240 [SAR 1:1 DAR 4:3]", "728 kb/s", "25 fps", "25 tbr", "12800 tbn"),
        dispositions=("default",), codec="h264", profile="Constrained Baseline",
        pix_fmt="yuv420p", pix_detail="progressive", width=320, height=240, sar="1:1",
        dar="4:3", fps=25.0, tbr=25.0, bitrate_kbps=728.0)
    assert s.interlaced is False and s.field_order == "progressive"
    assert s.channels == 0 and s.layout == ""


def test_aac_with_language_and_default() -> None:
    s = parse_stream(AAC)
    assert s is not None
    assert (s.file, s.index, s.ident, s.language, s.kind) == (0, 1, "0x2", "eng", "audio")
    assert (s.codec, s.profile, s.sample_rate, s.layout, s.channels) == ("aac", "LC", 48000,
                                                                          "mono", 1)
    assert s.bitrate_kbps == 70.0 and s.dispositions == ("default",)
    assert s.pix_fmt == "" and s.width == 0 and s.fps is None and s.interlaced is None


def test_hevc_10_bit_without_id_or_language() -> None:
    s = parse_stream(HEVC10)
    assert s is not None
    assert (s.file, s.index, s.ident, s.language) == (1, 0, "", "")
    assert (s.codec, s.profile, s.pix_fmt, s.pix_detail) == ("hevc", "Main 10", "yuv420p10le",
                                                             "tv, progressive")
    assert (s.width, s.height, s.fps, s.tbr, s.bitrate_kbps) == (320, 240, 29.97, 29.97, None)
    assert s.dispositions == ()


def test_vp8_prints_sar_dar_as_its_own_part() -> None:
    s = parse_stream(VP8)
    assert s is not None
    assert (s.codec, s.profile, s.pix_fmt, s.width, s.height) == ("vp8", "", "yuv420p", 320, 240)
    assert (s.sar, s.dar, s.fps) == ("1:1", "4:3", 25.0)


def test_opus_audio_without_bitrate() -> None:
    s = parse_stream(OPUS)
    assert s is not None
    assert (s.kind, s.codec, s.sample_rate, s.layout, s.channels, s.bitrate_kbps) == (
        "audio", "opus", 48000, "stereo", 2, None)


@pytest.mark.parametrize(("line", "layout", "name", "channels"), [
    (AAC51, "5.1", "5.1", 6),
    (PCM51SIDE, "5.1(side)", "5.1", 6),
])
def test_surround_layouts(line: str, layout: str, name: str, channels: int) -> None:
    s = parse_stream(line)
    assert s is not None
    assert (s.layout, s.layout_name, s.channels) == (layout, name, channels)


def test_interlaced_field_orders() -> None:
    s = parse_stream(INTERLACED)
    assert s is not None
    assert (s.pix_fmt, s.field_order, s.interlaced) == ("yuv420p", "top first", True)
    assert (s.width, s.height, s.sar, s.dar, s.fps, s.tbr) == (720, 576, "16:15", "4:3", 12.5, 12.5)
    assert s.parts[-1] == "start 1.400000"
    swapped = parse_stream(OUT_SWAPPED)
    assert swapped is not None
    assert (swapped.field_order, swapped.interlaced, swapped.bitrate_kbps) == (
        "top coded first", True, 200.0)


def test_output_stream_with_q_and_language() -> None:
    s = parse_stream(OUT_H264)
    assert s is not None
    assert (s.language, s.codec, s.profile, s.fps, s.tbr) == ("fra", "h264", "", 25.0, None)
    assert "q=2-31" in s.parts and s.dispositions == ("default",)


@pytest.mark.parametrize("line", [
    "  Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))",
    "Stream mapping:",
    "  Duration: 00:00:01.00, start: 0.000000, bitrate: 815 kb/s",
    "[matroska @ 0x55] Stream #1: not enough frames to estimate rate",
    "",
])
def test_other_lines_are_not_streams(line: str) -> None:
    assert parse_stream(line) is None


def test_stream_mapping_lines() -> None:
    m = parse_mapping("  Stream #0:1 -> #0:1 (aac (native) -> opus (libopus))")
    assert m == StreamMapping(0, 1, 0, 1, "aac (native) -> opus (libopus)")
    assert m.coder == "opus"
    copy = parse_mapping("  Stream #1:0 -> #0:2 (copy)")
    assert copy is not None and (copy.input_file, copy.output_index, copy.coder) == (1, 2, "copy")
    assert parse_mapping("  Stream #0:0 (h264) -> scale:default") is None  # a filter graph
    assert parse_mapping(H264) is None


def test_helpers() -> None:
    assert split_top("a (b, c), d [e, f], g") == ["a (b, c)", "d [e, f]", "g"]
    assert channels_of("stereo") == 2 and channels_of("6 channels") == 6
    assert channels_of("5.1(side)") == 0 and channels_of("") == 0


# ------------------------------------------------------------- the three users, real stderr
TRANSCODE = "\n".join([
    "[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'h264_aac.mp4':",
    "[info]   Metadata:",
    "[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 815 kb/s",
    "[info]" + H264,
    "[info]     Metadata:",
    "[info]" + AAC,
    "[info] Input #1, matroska,webm, from 'hevc10.mkv':",
    "[info]   Duration: 00:00:01.00, start: 0.000000, bitrate: 307 kb/s",
    "[info]" + HEVC10,
    "[info] Stream mapping:",
    "[info]   Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))",
    "[info]   Stream #0:1 -> #0:1 (aac (native) -> opus (libopus))",
    "[info]   Stream #1:0 -> #0:2 (copy)",
    "[libopus @ 0x556d130df780] [warning] No bit rate set. Defaulting to 64000 bps.",
    "[info] Output #0, matroska, to '/dev/null':",
    "[info]" + OUT_H264,
    "[info]     Side data:",
    "[info]   Stream #0:1(eng): Audio: opus ([255][255][255][255] / 0xFFFFFFFF), 48000 Hz, "
    "mono, flt, 64 kb/s (default)",
    "[info]   Stream #0:2: Video: hevc (Main 10), yuv420p10le(tv, progressive), 320x240 "
    "[SAR 1:1 DAR 4:3], q=2-31, 29.97 fps, 29.97 tbr, 1k tbn",
    "[info] frame=   25 fps=0.0 q=-1.0 Lsize=     133KiB time=00:00:00.98 bitrate=1108.0kbits/s "
    "speed=3.86x",
]) + "\n"


def test_progress_prelude_streams() -> None:
    parser = ProgressParser(inputs=[("in0", "a.mp4"), ("in1", "b.mkv")],
                            outputs=[("out", "x.mkv")])
    parser.feed(TRANSCODE.encode())
    progress = parser.progress_json()
    short = [(s["id"], s["index"], s["stream"], s["type"], s["codec"], s["coder"],
              s.get("pix_fmt"), s.get("width"), s.get("height"), float(s["fps"]),
              float(s["bitrate_kbit"]), s.get("sampling_hz"), s.get("layout"), s.get("channels"))
             for s in progress["inputs"] + progress["outputs"]]
    assert short == [
        ("in0", 0, 0, "video", "h264", "h264", "yuv420p", 320, 240, 25.0, 728.0, None, None, None),
        ("in0", 0, 1, "audio", "aac", "aac", None, None, None, 0.0, 70.0, 48000, "mono", 1),
        ("in1", 1, 0, "video", "hevc", "hevc", "yuv420p10le", 320, 240, 29.97, 0.0, None, None,
         None),
        # coders from the stream mapping ("… -> h264 (libx264)" gives "h264"; "copy")
        ("out", 0, 0, "video", "h264", "h264", "yuv420p", 320, 240, 0.0, 0.0, None, None,
         None),
        ("out", 0, 1, "audio", "opus", "opus", None, None, None, 0.0, 64.0, 48000, "mono", 1),
        ("out", 0, 2, "video", "hevc", "copy", "yuv420p10le", 320, 240, 29.97, 0.0, None, None,
         None),
    ]
    assert progress["outputs"][0]["frame"] == 25


def test_api_probe_streams() -> None:
    streams = parse_probe(TRANSCODE.splitlines())
    assert streams == [
        {"url": "h264_aac.mp4", "format": "mov,mp4,m4a,3gp,3g2,mj2", "index": 0, "stream": 0,
         "language": "und", "type": "video", "codec": "h264", "coder": "", "bitrate_kbps": 728,
         "duration_sec": 1, "fps": 25, "pix_fmt": "yuv420p", "width": 320, "height": 240,
         "sampling_hz": 0, "layout": "", "channels": 0},
        {"url": "h264_aac.mp4", "format": "mov,mp4,m4a,3gp,3g2,mj2", "index": 0, "stream": 1,
         "language": "eng", "type": "audio", "codec": "aac", "coder": "", "bitrate_kbps": 70,
         "duration_sec": 1, "fps": 0, "pix_fmt": "", "width": 0, "height": 0,
         "sampling_hz": 48000, "layout": "mono", "channels": 1},
        {"url": "hevc10.mkv", "format": "matroska,webm", "index": 1, "stream": 0,
         "language": "und", "type": "video", "codec": "hevc", "coder": "", "bitrate_kbps": 0,
         "duration_sec": 1, "fps": 29.97, "pix_fmt": "yuv420p10le", "width": 320,
         "height": 240, "sampling_hz": 0, "layout": "", "channels": 0},
    ]


def test_api_probe_language_and_layout_as_printed() -> None:
    lines = ["Input #0, mpegts, from 'x.ts':", "  Duration: 00:00:01.02, start: 1.429089",
             MPEG2, MP2_GER, "Input #1, wav, from 'y.wav':", PCM51SIDE]
    streams = parse_probe(lines)
    assert [(s["language"], s["type"], s["codec"], s["bitrate_kbps"]) for s in streams] == [
        ("und", "video", "mpeg2video", 0), ("ger", "audio", "mp2", 384),
        ("und", "audio", "pcm_s16le", 4608)]
    # Core's probe keeps the layout as printed; channels only for a plain layout name
    assert (streams[2]["layout"], streams[2]["channels"]) == ("5.1(side)", 0)
    assert streams[0]["duration_sec"] == 1.02


def test_webrtc_input_probe_media_info() -> None:
    info = parse_ffmpeg_streams("\n".join([
        "Input #0, mpegts, from 'interlaced.ts':", INTERLACED,
        "Input #1, matroska,webm, from 'vp8_opus.webm':", VP8.replace("#0:", "#1:"),
        OPUS.replace("#0:", "#1:")]))
    assert info.video == VideoStream(0, 0, "h264", "Main", "yuv420p", 720, 576, 12.5,
                                     interlaced=True)
    assert info.audio == AudioStream(1, 1, "opus", 48000, 2)
    info = parse_ffmpeg_streams("\n".join([HEVC10, PCM51SIDE]))
    assert info.video == VideoStream(1, 0, "hevc", "Main 10", "yuv420p10le", 320, 240, 29.97)
    assert info.audio == AudioStream(0, 0, "pcm_s16le", 48000, 6)
    audio_only = parse_ffmpeg_streams(AAC51)
    assert audio_only.video is None and audio_only.audio == AudioStream(0, 0, "aac", 44100, 6)
