"""trio_core.ffmpeg.progress: every progress field Core always emits, and Core's number formatting."""

from __future__ import annotations

import json
import re

from trio_core.ffmpeg.progress import Fixed3, ProgressParser, core_number
from trio_core.http.go_json import core_dumps


def test_progress_io_has_every_field_core_always_emits() -> None:
    parser = ProgressParser(inputs=[("in", "testsrc")], outputs=[("out", "-")])
    parser.feed(b"Input #0, lavfi, from 'testsrc':\n"
                b"  Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 320x240, 25 fps\n"
                b"  Stream #0:1: Audio: pcm_s16le, 44100 Hz, mono, s16, 705 kb/s\n"
                b"Output #0, null, to 'pipe:':\n"
                b"  Stream #0:0: Video: wrapped_avframe, rgb24, 320x240, q=2-31, 200 kb/s, 25 fps\n"
                b"  Stream #0:1: Audio: pcm_s16le, 44100 Hz, mono, s16, 705 kb/s\n"
                b"frame=   50 fps= 24.5 q=-0.0 size=N/A time=00:00:02.00 bitrate=N/A speed=0.98x\n")
    progress = parser.progress_json()
    always = {"id", "address", "index", "stream", "format", "type", "codec", "coder", "frame",
              "keyframe", "framerate", "fps", "packet", "pps", "size_kb", "bitrate_kbit",
              "extradata_size_bytes", "q", "avstream"}
    for io in progress["inputs"] + progress["outputs"]:
        assert always <= set(io), io
        assert set(io["framerate"]) == {"min", "max", "avg"}
    video, audio = progress["outputs"]
    assert {"pix_fmt", "width", "height"} <= set(video) and "sampling_hz" not in video
    assert {"sampling_hz", "layout", "channels"} <= set(audio) and "pix_fmt" not in audio
    text = core_dumps(progress)
    assert '"fps":24.500' in text and '"q":0.000' in text  # IO values: three decimals
    assert re.search(r'"outputs":\[\{[^]]*"fps":24\.500', text)
    top = json.loads(text)
    assert top["fps"] == 24.5 and top["frame"] == 50 and top["time"] == 2


def test_core_number_formatting() -> None:
    assert core_number(25.0) == 25 and isinstance(core_number(25.0), int)
    assert core_dumps({"a": core_number(12.5), "b": Fixed3(3), "c": Fixed3(float("nan")),
                       "d": ["x", Fixed3(-1.23456)]}) == '{"a":12.500,"b":3.000,"c":0.000,"d":["x",-1.235]}'
    # a client string that looks like a marker stays a string
    assert json.loads(core_dumps({"s": "0.000", "f": Fixed3(1)})) == {"s": "0.000", "f": 1.0}
