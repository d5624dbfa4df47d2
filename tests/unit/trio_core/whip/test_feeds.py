"""trio_core.whip.feeds: the SDP a ``{whip}`` reader gets and the packets its feed sends
(real loopback sockets); trio_core.whip.channels names; the subsystem's settings check."""

from __future__ import annotations

import socket

import pytest
import trio

from rtp.packet import build_rtp, parse_rtp
from rtp.sdp import Codec, SourceTrack
from rtp.source import Source
from trio_core.config.settings import load_config
from trio_core.config.startup_error import StartupError
from trio_core.whip.channels import check_name, source_id
from trio_core.whip.feeds import PAYLOAD_TYPES, Feed, _free_port_pair, describe
from trio_core.whip.routes import whip_blueprint
from trio_core.whip.subsystem import check_settings

SPS = bytes.fromhex("6742c01e")
PPS = bytes.fromhex("68ce3c80")


def test_description_names_codecs_ports_and_parameter_sets() -> None:
    source = Source("whip:cam", ("video", "audio"), sockets=False)
    source.set_tracks({
        "video": SourceTrack("video", Codec(102, "H264", 90000, None,
                                            {"profile-level-id": "42e01f"})),
        "audio": SourceTrack("audio", Codec(111, "opus", 48000, 2)),
    })
    source.state["video"].sprop = [SPS, PPS]
    text = describe("cam", source, {"video": 40000, "audio": 40002})
    assert "m=video 40000 RTP/AVP 96" in text and "a=rtpmap:96 H264/90000" in text
    assert "profile-level-id=42e01f" in text and "sprop-parameter-sets=Z0LAHg==,aM48gA==" in text
    assert "m=audio 40002 RTP/AVP 97" in text and "a=rtpmap:97 opus/48000/2" in text
    assert "c=IN IP4 127.0.0.1" in text


def test_port_pairs_are_even_with_a_free_neighbour() -> None:
    port = _free_port_pair()
    assert port % 2 == 0
    for p in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", p))


async def test_feed_sends_gop_then_live_with_its_own_ssrc_and_pt() -> None:
    source = Source("whip:cam", ("video",), sockets=False)
    source.set_tracks({"video": SourceTrack("video", Codec(102, "H264", 90000))})
    idr = b"\x65" + bytes(20)
    source.on_datagram("video", build_rtp(102, 1, 1000, 0xAAAA, b"\x78\x00\x04" + SPS + b"\x00\x04"
                                          + PPS), 0.0)
    source.on_datagram("video", build_rtp(102, 2, 1000, 0xAAAA, idr, marker=True), 0.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as reader:
        reader.bind(("127.0.0.1", 0))
        reader.settimeout(2)
        feed = Feed("cam", source, {"video": reader.getsockname()[1]})
        feed.open()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run)
            await trio.sleep(0.5)
            source.on_datagram("video", build_rtp(102, 3, 4600, 0xAAAA, b"\x41" + bytes(9)), 0.5)
            got = [parse_rtp(reader.recv(2000)) for _ in range(3)]
            feed.close()
            nursery.cancel_scope.cancel()
    assert [h.payload_type for h in got] == [PAYLOAD_TYPES["video"]] * 3
    assert len({h.ssrc for h in got}) == 1 and got[0].ssrc != 0xAAAA
    assert [h.sequence for h in got] == [1, 2, 3]  # the GOP (SPS/PPS, IDR), then live
    assert feed not in source.listeners


def test_names_and_settings() -> None:
    assert check_name("cam-1_a.b~") == "cam-1_a.b~" and source_id("cam") == "whip:cam"
    for bad in ("", "a/b", "a b", "ü", "x" * 129):
        with pytest.raises(ValueError):
            check_name(bad)
    cfg = load_config(None, env={}).replace(**{"whip.enable": True, "webrtc.enable": False})
    with pytest.raises(StartupError, match="whip.enable needs webrtc.enable"):
        check_settings(cfg)
    assert cfg["whip.timeout"] == 10 and cfg["whip.enable"] is True
    assert callable(whip_blueprint)
