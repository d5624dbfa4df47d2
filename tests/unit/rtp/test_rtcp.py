"""rtp.rtcp: round trips, wire layout, sequence wrap, garbage, and agreement with aiortc."""

from __future__ import annotations

import struct
import time

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from rtp.errors import ParseError
from rtp.rtcp import (
    NTP_EPOCH_OFFSET,
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_bye,
    build_fir,
    build_nack,
    build_pli,
    build_rr,
    build_sdes_cname,
    build_sr,
    ntp_to_unix,
    parse_rtcp,
    unix_to_ntp,
)

BLOCK = ReportBlock(ssrc=0xDEADBEEF, fraction_lost=12, packets_lost=-3, highest_sequence=70000,
                    jitter=44, lsr=0x12345678, dlsr=655)


# --- NTP ------------------------------------------------------------------------------------


def test_ntp_epoch_conversion() -> None:
    assert unix_to_ntp(0.0) == NTP_EPOCH_OFFSET << 32
    assert unix_to_ntp(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | 0x80000000
    assert ntp_to_unix(NTP_EPOCH_OFFSET << 32) == 0.0
    now = time.time()
    assert abs(ntp_to_unix(unix_to_ntp(now)) - now) < 1e-6


# --- round trips ------------------------------------------------------------------------------


def test_sender_report_round_trip() -> None:
    now = time.time()
    data = build_sr(0x1234, now, 0xFFFFFFFF, 77, 88888, [BLOCK])
    assert len(data) == 28 + 24 and data[0] == 0x81 and data[1] == 200
    (sr,) = parse_rtcp(data)
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (0x1234, 0xFFFFFFFF,
                                                                           77, 88888)
    assert abs(ntp_to_unix(sr.ntp_timestamp) - now) < 1e-6
    assert sr.reports == [BLOCK]


def test_receiver_report_round_trip() -> None:
    assert parse_rtcp(build_rr(7)) == [ReceiverReport(7, [])]
    assert parse_rtcp(build_rr(7, [BLOCK, BLOCK])) == [ReceiverReport(7, [BLOCK, BLOCK])]


def test_too_many_report_blocks_is_refused() -> None:
    assert len(parse_rtcp(build_rr(1, [BLOCK] * 31))[0].reports) == 31  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        build_rr(1, [BLOCK] * 32)  # the count field has 5 bits


def test_feedback_round_trips() -> None:
    assert parse_rtcp(build_pli(1, 2)) == [Pli(1, 2)]
    assert parse_rtcp(build_fir(1, 2, 300)) == [Fir(1, [(2, 300 & 0xFF)])]
    assert parse_rtcp(build_nack(1, 2, [5, 6, 21, 22, 100])) == [Nack(1, 2, [5, 6, 21, 22, 100])]
    assert parse_rtcp(struct.pack("!BBHI", 0x81, 203, 1, 9)) == [Bye([9])]


def test_fir_wire_layout_follows_rfc5104() -> None:
    data = build_fir(0xAAAA, 0xBBBB, 7)
    # FMT 4, PT 206, length 4; media source SSRC 0; FCI = ssrc, seq, 3 reserved bytes
    assert data == struct.pack("!BBHIIIB3x", 0x84, 206, 4, 0xAAAA, 0, 0xBBBB, 7)


@pytest.mark.parametrize(
    ("lost", "pairs"),
    [
        ([10], [(10, 0)]),
        ([10, 11, 26], [(10, 0b1000000000000001)]),
        ([10, 27], [(10, 0), (27, 0)]),  # 17 apart: two pairs
        ([65534, 65535, 0, 1], [(65534, 0b111)]),  # wraps into one pair
        ([3, 65530], [(65530, 1 << 8)]),  # 65530 -> 3 is 9 packets on
        ([3, 65500], [(65500, 0), (3, 0)]),  # across the wrap, in sequence order
    ],
)
def test_nack_packing(lost: list[int], pairs: list[tuple[int, int]]) -> None:
    data = build_nack(1, 2, lost)
    fci = data[12:]
    assert [struct.unpack_from("!HH", fci, i) for i in range(0, len(fci), 4)] == pairs
    (nack,) = parse_rtcp(data)
    assert isinstance(nack, Nack) and sorted(nack.lost) == sorted(s & 0xFFFF for s in lost)


def test_nack_many_and_duplicates() -> None:
    lost = list(range(65000, 65536)) + list(range(0, 600)) + [5, 5, 65000]
    (nack,) = parse_rtcp(build_nack(1, 2, lost))
    assert isinstance(nack, Nack)
    assert sorted(nack.lost) == sorted(set(lost))
    assert len(nack.lost) == len(set(nack.lost))  # no packet asked for twice
    with pytest.raises(ValueError):
        build_nack(1, 2, [])


def test_sdes_cname_is_skipped_and_well_formed() -> None:
    data = build_sdes_cname(0x42, "viewer-cname")
    assert len(data) % 4 == 0 and data[1] == 202
    assert parse_rtcp(data) == []
    (sdes,) = RtcpPacket.parse(data)
    assert isinstance(sdes, RtcpSdesPacket)
    assert sdes.chunks[0].ssrc == 0x42 and sdes.chunks[0].items == [(1, b"viewer-cname")]


def test_compound_with_skipped_types() -> None:
    remb = struct.pack("!BBHII", 0x8F, 206, 5, 1, 0) + b"REMB" + b"\x01\x00\x10\x00" + b"\0\0\0\2"
    twcc = struct.pack("!BBHII", 0x8F, 205, 2, 1, 2)  # RTPFB FMT 15: transport-cc
    app = struct.pack("!BBHI", 0x80, 204, 2, 1) + b"name"
    data = (build_rr(1, [BLOCK]) + build_sdes_cname(1, "x") + remb + twcc + app + build_pli(1, 2)
            + build_nack(1, 2, [9]))
    assert parse_rtcp(data) == [ReceiverReport(1, [BLOCK]), Pli(1, 2), Nack(1, 2, [9])]


def test_padding_in_the_last_packet() -> None:
    padded = struct.pack("!BBHII", 0xA1, 206, 3, 1, 2) + b"\x00\x00\x00\x04"
    assert parse_rtcp(build_rr(1) + padded) == [ReceiverReport(1, []), Pli(1, 2)]


# --- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "rtcp-short"),
        (b"\x80\xc8\x00", "rtcp-short"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x01", "rtcp-version"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "rtcp-length"),
        (build_rr(1) + b"\x80\xc9", "rtcp-short"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "rtcp-length"),  # RR says 1 block, has none
        (b"\x80\xc8\x00\x01\x00\x00\x00\x01", "rtcp-short"),  # SR without sender info
        (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "rtcp-length"),  # BYE count 2, one SSRC
        (b"\x81\xce\x00\x01\x00\x00\x00\x01", "rtcp-short"),  # PLI without media SSRC
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "rtcp-padding"),  # padding count 0
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x09", "rtcp-padding"),  # padding beyond the packet
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x01" + build_rr(1), "rtcp-padding"),  # not last
    ],
)
def test_garbage_raises_parse_error(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rtcp(data)
    assert info.value.reason == reason


# --- agreement with aiortc ---------------------------------------------------------------------


def _aiortc_block(b: ReportBlock) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(b.ssrc, b.fraction_lost, b.packets_lost, b.highest_sequence,
                            b.jitter, b.lsr, b.dlsr)


def test_our_packets_parse_the_same_in_aiortc() -> None:
    now = time.time()
    data = (build_sr(11, now, 90000, 5, 500, [BLOCK]) + build_rr(12, [BLOCK])
            + build_sdes_cname(11, "c") + build_pli(13, 14) + build_fir(13, 14, 3)
            + build_nack(13, 14, [100, 101, 117, 300]))
    sr, rr, _sdes, pli, fir, nack = RtcpPacket.parse(data)
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == 11
    assert sr.sender_info == RtcpSenderInfo(unix_to_ntp(now), 90000, 5, 500)
    assert sr.reports == [_aiortc_block(BLOCK)]
    assert isinstance(rr, RtcpRrPacket) and rr.reports == [_aiortc_block(BLOCK)]
    assert isinstance(pli, RtcpPsfbPacket) and (pli.fmt, pli.ssrc, pli.media_ssrc) == (1, 13, 14)
    assert isinstance(fir, RtcpPsfbPacket) and fir.fmt == 4 and fir.fci[:5] == b"\0\0\0\x0e\x03"
    assert isinstance(nack, RtcpRtpfbPacket) and nack.lost == [100, 101, 117, 300]


def test_aiortc_packets_parse_the_same_here() -> None:
    block = _aiortc_block(BLOCK)
    data = b"".join(bytes(p) for p in [
        RtcpSrPacket(21, RtcpSenderInfo(0x0102030405060708, 9, 10, 11), [block]),
        RtcpRrPacket(22, [block, block]),
        RtcpPsfbPacket(1, 23, 24),
        RtcpRtpfbPacket(1, 23, 24, [1, 2, 3, 40, 41]),
        RtcpByePacket([21, 22]),
    ])
    assert parse_rtcp(data) == [
        SenderReport(21, 0x0102030405060708, 9, 10, 11, [BLOCK]),
        ReceiverReport(22, [BLOCK, BLOCK]),
        Pli(23, 24),
        Nack(23, 24, [1, 2, 3, 40, 41]),
        Bye([21, 22]),
    ]


def test_build_bye_round_trips_and_aiortc_reads_it() -> None:
    data = build_bye([0x11223344, 7])
    assert parse_rtcp(data) == [Bye([0x11223344, 7])]
    assert [p.sources for p in RtcpPacket.parse(data)] == [[0x11223344, 7]]
    with pytest.raises(ValueError):
        build_bye([])
    with pytest.raises(ValueError):
        build_bye(range(32))
