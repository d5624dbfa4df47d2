"""trio_core.engine.process_config: process config decoding/validation (pure functions, no server; probe
parsing and number formatting are in test_probe.py / test_progress.py). Expected values come from running Go's encoding/json
(the version Core v16.16 vendors) on the same inputs; globs are tested in tests/unit/trio_core/util/test_glob.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from trio_core.engine.process_config import (
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
