"""Smoke test of the bench: ``python -m bench --quick`` against trio-core only.

A few viewers for a few seconds, on the forwarder and on the product path (real server,
API, WHEP); asserts that they connected, received packets and that the table printed. No timing assertions (the machine is shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.trio_core_server import pick_mode

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_quick_bench_against_trio_core(tmp_path: Path, ffmpeg: str) -> None:
    assert pick_mode() == "forwarder"
    out_json = tmp_path / "bench.json"
    out_md = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "kernel-floor,trio-core",
         "--workers", "1,2", "--steps", "3",
         "--window", "2", "--no-pin", "--no-netns", "--results", str(out_md),
         "--json", str(out_json)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, CORE_FFMPEG_BINARY=ffmpeg),
    )  # fmt: skip
    assert "WebRTC viewers" in proc.stdout, proc.stdout + proc.stderr
    assert "trio-core" in proc.stdout
    results = json.loads(out_json.read_text())
    by_name = {r["name"]: r for r in results}
    for name, workers in (("trio-core ×1", 1), ("trio-core ×2", 2), ("kernel-floor", 1)):
        tc = by_name[name]
        assert tc["error"] is None, tc["error"] + "\n" + proc.stderr[-3000:]
        assert tc["steps"] and tc["workers"] == workers, proc.stderr[-3000:]
        for step in tc["steps"]:
            assert step["connected"] == step["viewers"], step["fail_reasons"]
            assert step["pkts_per_s"] > 0 and step["workers"] == workers
            assert step["cpu_us_per_pkt"] > 0 and step["threads"]
            assert step["auth_fail"] == 0
            if name == "kernel-floor":
                assert step["unprotected"] == 0  # ready bytes, no SRTP: nothing to decrypt
            else:
                assert step["unprotected"] > 0  # SRTP really decrypted with the DTLS keys
    # two workers: the server has two fan-out threads (by name, in the per-thread CPU)
    threads = by_name["trio-core ×2"]["steps"][-1]["threads"]
    assert {"rtp-fanout-0", "rtp-fanout-1"} <= {t.rsplit(":", 1)[0] for t in threads}, threads
    assert "× kernel floor" in out_md.read_text()
    # the product path: the real server, its API and WHEP endpoint (bench/product.py)
    [api] = [r for r in results if r["name"] == "trio-core-api"]
    assert api["error"] is None, api["error"] + "\n" + proc.stderr[-3000:]
    assert api["connected"] == api["viewers"] == 3
    assert api["state_viewers"] == 3 and api["delete_status"] == 204
    assert api["children_after_stop"] == 0 and api["packets_after_stop"] == 0
    assert api["post_ms_p50"] > 0 and api["first_keyframe_ms_p50"] > 0
    md = out_md.read_text()
    assert md.startswith("# bench/ results")
    assert "## The product path" in md
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- the load viewer itself, against a minimal ICE-lite sender built from the rtp cores ----------

SOURCE_SDP = """v=0
o=- 0 0 IN IP4 127.0.0.1
s=bench
c=IN IP4 127.0.0.1
t=0 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1; profile-level-id=42C01F
m=audio 5002 RTP/AVP 111
a=rtpmap:111 opus/48000/2
"""


async def test_viewer_counts_decrypts_and_reports() -> None:
    """One bench viewer against a tiny ICE-lite/DTLS-server/SRTP sender: it connects, counts
    packets and a hole, NACKs it, sends RRs the sender can decrypt, and sees the keyframe."""
    import secrets
    import socket
    import struct

    import trio

    from bench.viewer import ViewerPool
    from rtp.dtls import Certificate, DtlsEndpoint
    from rtp.sdp import build_answer, parse_offer, parse_source_sdp
    from rtp.srtp import SrtpSession
    from rtp.stun import IceLite

    cert = Certificate.generate()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setblocking(False)
    pool = ViewerPool(probes=0, sample_every=4)
    rtcp_types: list[int] = []
    state: dict[str, SrtpSession] = {}
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            v = pool.new_viewer()
            offer = parse_offer(v.make_offer())
            ufrag, pwd = secrets.token_hex(4), secrets.token_hex(12)
            answer = build_answer(offer, ice_ufrag=ufrag, ice_pwd=pwd,
                                  fingerprint=cert.fingerprint,
                                  candidates=[("127.0.0.1", srv.getsockname()[1])],
                                  tracks=parse_source_sdp(SOURCE_SDP))  # fmt: skip
            v.accept_answer(answer.sdp)
            ice = IceLite(ufrag, pwd, offer.ice_ufrag)
            dtls = DtlsEndpoint(cert, offer.fingerprint, role="server")

            async def serve() -> None:
                while True:
                    await trio.lowlevel.wait_readable(srv)
                    while True:
                        try:
                            data, addr = srv.recvfrom(2048)
                        except BlockingIOError:
                            break
                        now = trio.current_time()
                        if data[0] <= 3:
                            resp = ice.handle(data, addr, now)
                            if resp:
                                srv.sendto(resp, addr)
                        elif 20 <= data[0] <= 63:
                            dtls.receive(data, now)
                            for d in dtls.datagrams_to_send():
                                srv.sendto(d, addr)
                            if dtls.handshake_complete and "srtp" not in state:
                                state["srtp"] = SrtpSession(dtls.srtp_keys())
                        elif "srtp" in state:
                            plain = state["srtp"].unprotect_rtcp(data)
                            pos = 0
                            while pos + 4 <= len(plain):
                                rtcp_types.append(plain[pos + 1])
                                pos += (int.from_bytes(plain[pos + 2 : pos + 4], "big") + 1) * 4

            nursery.start_soon(serve)
            with trio.fail_after(20):
                assert await pool.establish(v), v.failed
                while "srtp" not in state:
                    await trio.sleep(0.01)
            video, audio = answer.tracks["video"], answer.tracks["audio"]
            assert ice.nominated is not None
            for i in range(120):
                payload = b"\x65" + bytes(300) if i == 0 else b"\x41" + bytes([i]) * 300
                pkt = struct.pack("!BBHII", 0x80, 0x80 | video.payload_type, 1000 + i,
                                  i * 3000, video.ssrc) + payload  # fmt: skip
                if i != 60:  # one hole
                    srv.sendto(state["srtp"].protect(pkt), ice.nominated)
                apkt = struct.pack("!BBHII", 0x80, audio.payload_type, 5000 + i, i * 960,
                                   audio.ssrc) + b"\x11" * 80  # fmt: skip
                srv.sendto(state["srtp"].protect(apkt), ice.nominated)
                await trio.sleep(0.005)
            with trio.fail_after(10):
                while 201 not in rtcp_types or 205 not in rtcp_types:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        srv.close()
    by_kind = {t.kind: t for t in v.tracks.values()}
    assert by_kind["video"].received == 119 and by_kind["video"].expected == 120
    assert by_kind["video"].gaps == 1 and by_kind["video"].nack_sent == 1
    assert by_kind["audio"].received == 120
    assert v.keyframe_seen and v.unprotected > 0 and v.auth_fail == 0
    assert v.timing.first_rtp and v.timing.first_keyframe
