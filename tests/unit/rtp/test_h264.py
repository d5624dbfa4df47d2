"""rtp.h264: NAL type inspection, keyframe detection, STAP-A, sprop (real FFmpeg RTP: tests/integration/rtp/test_h264.py)."""

from __future__ import annotations

import base64

import pytest

from rtp.errors import ParseError
from rtp.h264 import (
    build_stap_a,
    has_parameter_sets,
    is_keyframe,
    nal_types,
    parse_sprop,
    profile_level_id_from_sps,
)

SPS = bytes.fromhex("6742c01eda0507ec04400000030040000006438a0a88")


PPS = bytes.fromhex("68ce3c80")


IDR_SLICE = b"\x65\x88\x84\x00\x33"


P_SLICE = b"\x41\x9a\x02\x04"


def fu_a(nal: bytes, *, start: bool, end: bool = False) -> bytes:
    """One FU-A fragment of ``nal`` (RFC 6184 5.8)."""
    indicator = (nal[0] & 0xE0) | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
    return bytes([indicator, header]) + nal[1:]


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (b"", []),
        (SPS, [7]),
        (IDR_SLICE, [5]),
        (P_SLICE, [1]),
        (build_stap_a([SPS, PPS]), [7, 8]),
        (build_stap_a([SPS, PPS, IDR_SLICE]), [7, 8, 5]),
        (build_stap_a([SPS, PPS])[:-2], [7]),  # truncated aggregate: what is readable
        (b"\x18", []),  # STAP-A with no units
        (fu_a(IDR_SLICE, start=True), [5]),
        (fu_a(IDR_SLICE, start=False), []),  # continuation fragments start nothing
        (fu_a(IDR_SLICE, start=False, end=True), []),
        (b"\x7c", []),  # FU-A without its header byte
        (b"\x19\x00", []),  # STAP-B, MTAP, FU-B: not produced by FFmpeg, not inspected
        (b"\x00\x01", []),  # type 0 is undefined
    ],
)
def test_nal_types(payload: bytes, types: list[int]) -> None:
    assert nal_types(payload) == types


def test_keyframe_and_parameter_set_detection() -> None:
    # Decision: a payload *starts* a keyframe when it carries an SPS or the first bytes of an
    # IDR; the STAP-A [SPS, PPS] that FFmpeg sends before each IDR therefore counts too.
    assert is_keyframe(build_stap_a([SPS, PPS]))
    assert is_keyframe(IDR_SLICE)
    assert is_keyframe(fu_a(IDR_SLICE, start=True))
    assert is_keyframe(SPS)
    assert not is_keyframe(fu_a(IDR_SLICE, start=False))
    assert not is_keyframe(P_SLICE)
    assert not is_keyframe(fu_a(P_SLICE, start=True))
    assert not is_keyframe(PPS)
    assert not is_keyframe(b"")
    assert has_parameter_sets(build_stap_a([SPS, PPS]))
    assert has_parameter_sets(build_stap_a([PPS, SPS, IDR_SLICE]))
    assert not has_parameter_sets(SPS)
    assert not has_parameter_sets(build_stap_a([SPS]))
    assert not has_parameter_sets(IDR_SLICE)


def test_build_stap_a_layout() -> None:
    payload = build_stap_a([SPS, PPS])
    # F=0, NRI = the highest of the units (SPS/PPS: 3), type 24; then size-prefixed units
    assert payload == b"\x78" + len(SPS).to_bytes(2, "big") + SPS + len(PPS).to_bytes(2, "big") + PPS
    assert build_stap_a([P_SLICE])[0] == (P_SLICE[0] & 0x60) | 24
    with pytest.raises(ValueError):
        build_stap_a([])
    with pytest.raises(ValueError):
        build_stap_a([SPS, b""])
    with pytest.raises(ValueError):
        build_stap_a([b"\x65" * 0x10000])


def test_parse_sprop() -> None:
    value = base64.b64encode(SPS).decode() + "," + base64.b64encode(PPS).decode()
    assert parse_sprop(value) == [SPS, PPS]
    assert parse_sprop(value.replace("=", "")) == [SPS, PPS]  # padding is optional in practice
    assert parse_sprop(" " + value.replace(",", ", ") + " ") == [SPS, PPS]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "sprop-empty"), (",", "sprop-empty"), ("Z0LAHt@", "sprop-base64"),
     ("Z", "sprop-base64"), ("Z0LAH\u00e9", "sprop-base64"), ("====", "sprop-base64")],
)
def test_parse_sprop_garbage(value: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_sprop(value)
    assert info.value.reason == reason


def test_profile_level_id_from_sps() -> None:
    assert profile_level_id_from_sps(SPS) == "42c01e"
    for bad, reason in [(b"\x67\x42", "sps-short"), (PPS + b"\x00", "sps-type")]:
        with pytest.raises(ParseError) as info:
            profile_level_id_from_sps(bad)
        assert info.value.reason == reason
