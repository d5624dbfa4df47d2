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


def test_progress_json_is_built_once_per_line_and_follows_every_line() -> None:
    parser = ProgressParser(inputs=[("in", "testsrc")], outputs=[("out", "-")])
    parser.feed(b"Input #0, lavfi, from 'testsrc':\n"
                b"  Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 320x240, 25 fps\n"
                b"Output #0, null, to 'pipe:':\n"
                b"  Stream #0:0: Video: wrapped_avframe, rgb24, 320x240, q=2-31, 200 kb/s, 25 fps\n"
                b"frame=   50 fps= 24.5 q=-0.0 size=N/A time=00:00:02.00 bitrate=N/A speed=0.98x\n")
    first = parser.progress_json()
    assert parser.progress_json() is first  # no new line: the same view, not rebuilt
    assert first["frame"] == 50 and first["outputs"][0]["frame"] == 50
    parser.feed(b"frame=   75 fps= 25.0 q=-0.0 size=N/A time=00:00:03.00 bitrate=N/A speed=1x\n")
    second = parser.progress_json()
    assert second is not first
    assert second["frame"] == 75 and second["outputs"][0]["frame"] == 75
    assert first["frame"] == 50  # a view already handed out is never changed underneath
    parser.feed(b"frame=   80 fps= 25.0 q=-0.0 size=N/A time=00:00:03.20 bitrate=N/A")
    assert parser.progress_json() is second  # an incomplete line changes nothing yet
    parser.close()
    assert parser.progress_json()["frame"] == 80  # the flushed last line does


def test_orjson_path_renders_like_the_reference_encoder() -> None:
    from trio_core.http.go_json import reference_dumps

    payload = {"progress": {"fps": Fixed3(24.5), "q": Fixed3(-0.0), "n": core_number(3.0),
                            "list": [Fixed3(1), 2, "x", None, True, 1.5]},
               "metadata": {"user": {"nested": [1, {"a": "b"}], "f": 0.25}}, "ok": False}
    assert core_dumps(payload) == reference_dumps(payload)
    assert core_dumps(payload, marked=("progress",)) == reference_dumps(payload, marked=("progress",))
    big = {"n": 2**70, "f": Fixed3(2)}  # beyond orjson's 64-bit ints: the reference path
    assert core_dumps(big) == '{"n":1180591620717411303424,"f":2.000}'


def test_prerendered_progress_is_reused_by_identity_and_renders_the_same() -> None:
    from trio_core.http.go_json import PrerenderCache, reference_dumps

    cache = PrerenderCache()
    progress = {"fps": Fixed3(24.5), "frame": 3}
    first = cache.get("p", progress)
    assert cache.get("p", progress) is first
    replaced = {"fps": Fixed3(25), "frame": 4}
    assert cache.get("p", replaced) is not first  # a new progress object: rendered anew
    payload = [{"id": "p", "state": {"progress": cache.get("p", replaced)}}]
    assert core_dumps(payload) == '[{"id":"p","state":{"progress":{"fps":25.000,"frame":4}}}]'
    payload.append({"metadata": 2**70})  # orjson refuses: the reference path unwraps it
    assert core_dumps(payload) == reference_dumps(
        [{"id": "p", "state": {"progress": replaced}}, {"metadata": 2**70}])
