"""trio_core.ffmpeg.probe: FFmpeg's input prelude parsed into Core's probe answer."""

from __future__ import annotations

from trio_core.ffmpeg.probe import parse_probe

PROBE_LINES = [
    "[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/data/x.mp4':",
    "[info]   Duration: 00:01:02.28, start: 0.000000, bitrate: 5895 kb/s",
    "[info]   Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, "
    "progressive), 1920x1080 [SAR 1:1 DAR 16:9], 5700 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)",
    "[info]   Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, "
    "192 kb/s (default)",
    "Input #1, lavfi, from 'anullsrc':",
    "  Stream #1:0: Audio: pcm_u8, 44100 Hz, 5.1, u8, 705 kb/s",
    "  Stream #1:1: Data: bin_data",
    "Output #0, null, to 'pipe:':",
    "  Stream #0:0: Video: wrapped_avframe, yuv420p, 1920x1080, q=2-31, 200 kb/s, 29.97 fps",
]


def test_probe_parses_inputs_like_core_prelude() -> None:
    streams = parse_probe(PROBE_LINES)
    assert [(s["index"], s["stream"], s["type"]) for s in streams] == [
        (0, 0, "video"), (0, 1, "audio"), (1, 0, "audio")]
    video, audio, surround = streams
    assert video == {
        "url": "file:/data/x.mp4", "format": "mov,mp4,m4a,3gp,3g2,mj2", "index": 0, "stream": 0,
        "language": "und", "type": "video", "codec": "h264", "coder": "", "bitrate_kbps": 5700,
        "duration_sec": 62.28, "fps": 29.97, "pix_fmt": "yuv420p", "width": 1920,
        "height": 1080, "sampling_hz": 0, "layout": "", "channels": 0,
    }
    assert (audio["language"], audio["codec"], audio["sampling_hz"], audio["layout"],
            audio["channels"], audio["bitrate_kbps"]) == ("eng", "aac", 48000, "stereo", 2, 192)
    assert (surround["duration_sec"], surround["layout"], surround["channels"]) == (0, "5.1", 6)
