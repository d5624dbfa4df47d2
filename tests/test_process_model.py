"""Process config decoding/validation, probe parsing and Core's number formatting (pure
functions, no server). Expected values come from running Go's encoding/json (the version
Core v16.16 vendors) on the same inputs; globs are tested in tests/test_glob.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from trio_core.api.corejson import core_dumps
from trio_core.ffmpeg.probe import parse_probe
from trio_core.ffmpeg.progress import Fixed3, ProgressParser, core_number
from trio_core.model import (
    ConfigError,
    ConfigTypeError,
    ProcessConfig,
    check_process_id,
    decode_onto,
)

SHORTUUID = re.compile(r"[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{22}")


def base() -> dict[str, Any]:
    return {
        "id": "a", "input": [{"id": "in0", "address": "addr0", "options": ["-re"]},
                             {"id": "in1", "address": "addr1", "options": []}],
        "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}],
        "limits": {"cpu_usage": 50, "memory_mbytes": 100, "waitfor_seconds": 5},
        "options": ["x", "y"], "reconnect_delay_seconds": 3,
    }


def test_decode_onto_behaves_like_go_unmarshal_onto_a_filled_struct() -> None:
    body = {"input": [{"address": "new"}], "limits": {"cpu_usage": 10}, "options": ["z"],
            "ID": "b", "owner": "someone", "domain": "x", "scheduler": {"cron": "*"}}
    merged = decode_onto(base(), body)
    # Go: input[0] decoded *into* the old element (id and options kept), input[1] dropped
    assert merged["input"] == [{"id": "in0", "address": "new", "options": ["-re"]}]
    assert merged["limits"] == {"cpu_usage": 10, "memory_mbytes": 100, "waitfor_seconds": 5}
    assert merged["options"] == ["z"]
    assert merged["id"] == "b"  # keys match case-insensitively as in Go
    assert "owner" not in merged and "domain" not in merged and "scheduler" not in merged
    assert merged["reconnect_delay_seconds"] == 3  # not sent: kept
    # null: lists become empty (nil), scalars and objects stay
    nulled = decode_onto(base(), {"options": None, "id": None, "limits": None})
    assert nulled["options"] is None and nulled["id"] == "a" and nulled["limits"]["memory_mbytes"] == 100
    assert base()["input"][0]["address"] == "addr0"  # the base is not modified


@pytest.mark.parametrize(("body", "field"), [
    ({"reconnect_delay_seconds": -1}, "reconnect_delay_seconds"),
    ({"limits": {"memory_mbytes": 1.5}}, "limits.memory_mbytes"),
    ({"reconnect_delay_seconds": "5"}, "reconnect_delay_seconds"),
    ({"stale_timeout_seconds": 2**64}, "stale_timeout_seconds"),
    ({"reconnect": "sometimes"}, "reconnect"),
    ({"input": [{"options": [1]}]}, "input[0].options[0]"),
    ({"output": {"address": "-"}}, "output"),
    ({"limits": []}, "limits"),
])
def test_type_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigTypeError) as info:
        decode_onto(base(), body)
    assert info.value.field == field


def test_from_json_ignores_unknown_fields_and_generates_io_ids_like_core() -> None:
    cfg = ProcessConfig.from_json({
        "id": "p", "owner": "me", "input": [{"address": "in", "foo": 1}],
        "output": [{"address": "out", "cleanup": [{"pattern": "x", "extra": True}]}],
        "limits": {"cpu_usage": 5, "gpu": 3}, "webrtc": {"enabled": False, "later": 1},
    })
    assert SHORTUUID.fullmatch(cfg.input[0].id) and SHORTUUID.fullmatch(cfg.output[0].id)
    out = cfg.to_json()
    assert "owner" not in out and "cleanup" not in out["input"][0]
    assert out["output"][0]["cleanup"][0]["pattern"] == "x"
    assert "cleanup" not in ProcessConfig.from_json(
        {"id": "p", "input": [{"address": "i"}], "output": [{"address": "o"}]}).to_json()["output"][0]


@pytest.mark.parametrize("good", [
    "restreamer-ui:ingest:3b6a3d5e-4c1f-4d5e-9b3a-0c1d2e3f4a5b_snapshot",
    "restreamer-ui:egress:youtube:3b6a3d5e-4c1f-4d5e-9b3a-0c1d2e3f4a5b", "a.b-c_d", "X" * 255,
])
def test_valid_ids(good: str) -> None:
    assert check_process_id(good) == good


@pytest.mark.parametrize(("bad", "fragment"), [
    ("a/b", "'/'"), ("a\r\nb", "'\\r'"), ("with space", "' '"), ("", "empty"), ("   ", "empty"),
    ("x" * 256, "at most 255"), ("ü", "'ü'"), ("a?b", "'?'"), ("a%2Fb", "'%'"),
])
def test_invalid_ids_name_the_field(bad: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProcessConfig.from_json({"id": bad, "input": [{"address": "i"}], "output": [{"address": "o"}]})
    assert info.value.field == "id" and fragment in info.value.message


def test_legacy_ids_load_but_empty_never() -> None:
    obj = {"id": "old/one with space", "input": [{"address": "i"}], "output": [{"address": "o"}]}
    assert ProcessConfig.from_json(obj, legacy_id=True).id == "old/one with space"
    with pytest.raises(ConfigError):
        ProcessConfig.from_json({**obj, "id": ""}, legacy_id=True)


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


def test_decoding_keeps_every_webrtc_option() -> None:
    """Every field ProcessConfig knows survives the Go-like decode the API does (a field
    missing from PROCESS_SCHEMA would be dropped silently: webrtc.video_codecs once was)."""
    body = {"id": "p", "input": [{"id": "in", "address": "x"}],
            "output": [{"id": "out", "address": "-"}],
            "webrtc": {"enabled": True, "video_pt": 100, "audio_pt": 101,
                       "force_transcode": True, "token": "t", "video_codecs": ["h264", "vp8"]}}
    cfg = ProcessConfig.from_json(decode_onto({}, body))
    assert cfg.to_json()["webrtc"] == body["webrtc"]
    # and a PUT that sends only some webrtc fields keeps the others
    again = ProcessConfig.from_json(decode_onto(cfg.to_json(), {"webrtc": {"token": "u"}}))
    assert again.to_json()["webrtc"] == {**body["webrtc"], "token": "u"}
