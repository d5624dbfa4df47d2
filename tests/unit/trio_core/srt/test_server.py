"""trio_core.srt.server: libsrt statistics mapped to Core's fields."""

from __future__ import annotations


def test_core_stats_maps_libsrt_fields_and_never_yields_nan() -> None:
    import json

    from trio_core.srt.binding import BStats
    from trio_core.srt.server import core_stats

    raw = BStats()
    raw.byteRecvTotal, raw.pktSentTotal, raw.msRTT = 123456, 42, 0.25
    raw.pktRcvAvgBelatedTime = float("nan")  # what libsrt reports before any late packet
    raw.mbpsBandwidth = float("inf")
    stats = core_stats(raw)
    assert (stats["recv_bytes"], stats["sent_pkt"], stats["rtt_ms"]) == (123456, 42, 0.25)
    assert stats["pkt_recv_avg_belated_time_ms"] == 0 and stats["bandwidth_mbit"] == 0.0
    json.dumps(stats, allow_nan=False)
    assert len(stats) == 47  # every field of Core's api.SRTStatistics, nothing else
