"""Forwarder over real sockets on 127.0.0.1: FFmpeg → Source → Peers → viewers.

The viewers here are the load viewers of ``bench/viewer.py`` (ICE controlling, DTLS client,
SRTP, RR/NACK like a browser, built on the ``rtp`` cores); the decoding client (aiortc)
is in ``test_forwarder_aiortc.py``.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
import trio
from aioice import stun

from bench.viewer import ViewerPool
from rtp.forwarder import Forwarder
from rtp.source import Source
from tests.helpers.leaks import child_pids, open_fds, task_count
from tests.helpers.producer import lavfi_to_rtp, start_producer, wait_for_file


async def connect_viewers(fwd: Forwarder, pool: ViewerPool, source_id: str, n: int) -> list:
    viewers = []
    for _ in range(n):
        v = pool.new_viewer()
        _, answer = await fwd.add_peer(source_id, v.make_offer())
        v.accept_answer(answer.sdp)
        viewers.append(v)
    results = []
    async with trio.open_nursery() as nursery:
        async def one(v):  # noqa: ANN001, ANN202
            results.append(await pool.establish(v, timeout=10))
        for v in viewers:
            nursery.start_soon(one, v)
    assert all(results), [v.failed for v in viewers]
    with trio.fail_after(10):  # media reaches every viewer
        while not all(any(t.kind == "video" for t in v.tracks.values()) for v in viewers):
            await trio.sleep(0.05)
    return viewers


def video_track(v):  # noqa: ANN001, ANN201
    return next(t for t in v.tracks.values() if t.kind == "video")


@pytest.mark.slow
async def test_viewers_keep_receiving_across_a_producer_restart(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery:
        fwd = Forwarder()
        await nursery.start(fwd.run)
        source: Source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        producer = await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))
        source.set_sdp(await wait_for_file(sdp))
        pool = ViewerPool(probes=3)
        await nursery.start(pool.run)
        viewers = await connect_viewers(fwd, pool, "cam", 3)
        await trio.sleep(2.0)
        before = [video_track(v).received for v in viewers]
        ssrcs = [video_track(v).ssrc for v in viewers]
        assert all(n > 20 for n in before), before

        producer.send_signal(signal.SIGKILL)  # the producer dies mid-stream...
        await producer.wait()
        sdp.unlink()
        await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))  # ...and returns
        await trio.sleep(2.5)

        for v, n, ssrc in zip(viewers, before, ssrcs, strict=True):
            track = video_track(v)
            assert track.ssrc == ssrc  # the viewer's SSRC did not change
            assert track.received > n + 20  # media kept flowing after the restart
            assert track.gaps == 0  # continuous sequence numbers across the restart
            assert v.auth_fail == 0
        assert source.state["video"].restarts == 1
        assert all(p.live for p in source.peers.values())
        nursery.cancel_scope.cancel()


async def test_closing_a_source_with_20_peers_frees_everything(ffmpeg: str, tmp_path) -> None:
    fds_before = open_fds()
    tasks_before = task_count()
    async with trio.open_nursery() as outer:
        fwd = Forwarder()
        await outer.start(fwd.run)
        pool = ViewerPool(probes=0)
        await outer.start(pool.run)
        async with trio.open_nursery() as process_scope:  # what a process owns
            source = await process_scope.start(fwd.open_source, "cam", ("video", "audio"))
            sdp = tmp_path / "cam.sdp"
            await start_producer(process_scope, lavfi_to_rtp(ffmpeg, source.ports, sdp))
            source.set_sdp(await wait_for_file(sdp))
            viewers = await connect_viewers(fwd, pool, "cam", 20)
            await trio.sleep(0.5)
            peers = list(source.peers.values())
            assert len(peers) == 20 and all(p.live for p in peers)
            process_scope.cancel_scope.cancel()
        assert all(p.closed for p in peers)
        assert source.closed and "cam" not in fwd.sources
        assert fwd.mux.peer_count == 0
        assert not child_pids()
        assert len(viewers) == 20
        outer.cancel_scope.cancel()
    assert open_fds() == fds_before
    assert task_count() == tasks_before


async def test_garbage_on_the_mux_is_dropped_and_counted(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery:
        fwd = Forwarder()
        await nursery.start(fwd.run)
        source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))
        source.set_sdp(await wait_for_file(sdp))
        pool = ViewerPool(probes=1)
        await nursery.start(pool.run)
        [good] = await connect_viewers(fwd, pool, "cam", 1)
        peer = next(iter(source.peers.values()))

        attacker = trio.socket.socket(type=socket.SOCK_DGRAM)
        await attacker.bind(("127.0.0.1", 0))
        target = ("127.0.0.1", fwd.port)
        # a Binding request with the right USERNAME but a wrong MESSAGE-INTEGRITY
        msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        msg.attributes["USERNAME"] = f"{peer.ice.local_ufrag}:{peer.ice.remote_ufrag}"
        msg.add_message_integrity(b"not-the-password")
        junk = [bytes(msg), b"\x00\x01\x00", os.urandom(200), b"\x16\xfe\xfd" + os.urandom(60),
                b"\x80\xc9" + os.urandom(40), b"\xff" * 10, b""]
        for data in junk * 10:
            await attacker.sendto(data, target)
        with trio.move_on_after(0.5):
            reply = await attacker.recv(2048)
            pytest.fail(f"the server answered garbage: {reply!r}")
        attacker.close()

        before = video_track(good).received
        await trio.sleep(1.0)
        assert video_track(good).received > before + 10  # the good viewer did not notice
        assert peer.live
        assert sum(fwd.mux.dropped.values()) >= 60
        assert peer.ice.dropped["integrity"] == 10
        nursery.cancel_scope.cancel()


async def test_a_wrong_dtls_certificate_closes_only_that_peer(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery:
        fwd = Forwarder()
        await nursery.start(fwd.run)
        source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))
        source.set_sdp(await wait_for_file(sdp))
        pool = ViewerPool(probes=2)
        await nursery.start(pool.run)
        [good] = await connect_viewers(fwd, pool, "cam", 1)

        liar = pool.new_viewer()
        offer = liar.make_offer().replace(
            pool.certificate.fingerprint, ":".join(["AB"] * 32)
        )
        liar_peer, answer = await fwd.add_peer("cam", offer)
        liar.accept_answer(answer.sdp)
        assert not await pool.establish(liar, timeout=5)
        assert liar_peer.closed and "certificate" in (liar_peer.close_reason or "")
        before = video_track(good).received
        await trio.sleep(0.5)
        assert video_track(good).received > before
        nursery.cancel_scope.cancel()


async def test_nack_pli_answered_and_sender_reports_sent(ffmpeg: str, tmp_path) -> None:
    from rtp.rtcp import build_nack, build_pli
    from rtp.srtp import SrtpSession

    async with trio.open_nursery() as nursery:
        fwd = Forwarder()
        await nursery.start(fwd.run)
        source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))
        source.set_sdp(await wait_for_file(sdp))
        pool = ViewerPool(probes=1)
        await nursery.start(pool.run)
        [v] = await connect_viewers(fwd, pool, "cam", 1)
        peer = next(iter(source.peers.values()))
        await trio.sleep(2.5)
        track = video_track(v)
        # Sender Reports arrived for both tracks (the viewer records their NTP time)
        assert all(t.lsr for t in v.tracks.values()), {t.kind: t.lsr for t in v.tracks.values()}
        # the viewer's receiver reports proved the handshake done: OpenSSL's state is freed
        assert peer.dtls.released and peer.live

        # our own SRTCP sender (another SSRC, so its SRTCP index is its own)
        client = SrtpSession(v.dtls.srtp_keys())
        lost = [(track.highest_ext - k) & 0xFFFF for k in (3, 5, 6)]
        v.send(client.protect_rtcp(build_nack(0x1234, track.ssrc, lost)))
        with trio.fail_after(2):
            while peer.out["video"].retransmitted < 3:
                await trio.sleep(0.02)
        assert peer.nacks == 1
        with trio.fail_after(2):
            while track.dups < 3:  # the viewer got the very packets again
                await trio.sleep(0.02)

        v.send(client.protect_rtcp(build_pli(0x1234, track.ssrc)))
        with trio.fail_after(2):
            while peer.keyframe_replays == 0:
                await trio.sleep(0.02)
        assert peer.plis == 1  # answered from the GOP cache: the GOP was replayed
        assert peer.replayed_packets > 0
        assert not peer.dropped, peer.dropped  # as new packets: no SRTP refusal
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_consent_expiry_closes_only_the_silent_viewer(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery:
        fwd = Forwarder(consent_timeout=6.0)
        await nursery.start(fwd.run)
        source = await nursery.start(fwd.open_source, "cam", ("video", "audio"))
        sdp = tmp_path / "cam.sdp"
        await start_producer(nursery, lavfi_to_rtp(ffmpeg, source.ports, sdp))
        source.set_sdp(await wait_for_file(sdp))
        pool = ViewerPool(probes=0)
        await nursery.start(pool.run)
        alive, silent = await connect_viewers(fwd, pool, "cam", 2)
        peers = {p.ice.remote_ufrag: p for p in source.peers.values()}
        pool.close_viewer(silent)  # it stops sending consent checks (like a closed tab)
        await trio.sleep(7.5)
        assert peers[silent.local_ufrag].closed
        assert peers[silent.local_ufrag].close_reason == "consent-expired"
        assert peers[alive.local_ufrag].live
        assert list(source.peers) == [peers[alive.local_ufrag].id]
        nursery.cancel_scope.cancel()
