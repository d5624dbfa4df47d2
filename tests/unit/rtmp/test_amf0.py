"""rtmp.amf0: AMF0 values round-trip with known bytes; malformed input is a typed error."""

from __future__ import annotations

import math

import pytest

from rtmp import amf0
from rtmp.errors import AmfError


def test_amf0_round_trip_and_known_bytes() -> None:
    values = ["connect", 1.0, {"app": "live", "n": None, "ok": True, "list": [1.0, "a"],
                               "meta": amf0.EcmaArray(width=320.0)}, None, amf0.UNDEFINED,
              amf0.AmfDate(1000.0, 0), "x" * 70000]
    data = amf0.encode_all(*values)
    decoded = amf0.decode_all(data)
    assert decoded[:2] == ["connect", 1.0]
    assert decoded[2]["app"] == "live" and decoded[2]["n"] is None and decoded[2]["ok"] is True
    assert decoded[2]["list"] == [1.0, "a"]
    assert isinstance(decoded[2]["meta"], amf0.EcmaArray) and decoded[2]["meta"] == {"width": 320.0}
    assert decoded[3] is None and decoded[4] is amf0.UNDEFINED
    assert decoded[5] == amf0.AmfDate(1000.0, 0)
    assert decoded[6] == "x" * 70000  # long string (0x0c)
    # bytes as the specification lays them out
    assert amf0.encode(1.5) == b"\x00\x3f\xf8" + b"\x00" * 6
    assert amf0.encode("ab") == b"\x02\x00\x02ab"
    assert amf0.encode({"a": True}) == b"\x03\x00\x01a\x01\x01\x00\x00\x09"
    assert math.isnan(amf0.decode(amf0.encode(float("nan")))[0])


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x02\x00\x05ab", "amf-short"),
    (b"\x42", "amf-marker"),
    (b"\x02\x00\x02\xff\xfe", "amf-utf8"),
    (b"\x09", "amf-object-end"),
    (b"\x07\x00\x01", "amf-reference"),
    (b"\x0a\xff\xff\xff\xff\x05", "amf-count"),
    (b"\x03" + b"\x00\x01a\x03" * 40 + b"\x00\x00\x09", "amf-depth"),
])
def test_amf0_rejects_malformed_input(data: bytes, reason: str) -> None:
    with pytest.raises(AmfError) as info:
        amf0.decode_all(data)
    assert info.value.reason == reason


