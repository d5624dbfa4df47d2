"""The SRT server end to end: FFmpeg pushes H264+AAC (MPEG-TS) over SRT, a process reads
``{srt,name=…}`` and serves WHEP, aiortc decodes, a second FFmpeg subscribes; refusals
(token, second publisher, passphrase), garbage datagrams, a slow subscriber, publisher
restarts, and a missing libsrt."""

from __future__ import annotations

import logging
import random
import socket
import struct
from functools import partial
from typing import Any

import pytest
import trio

from bench.viewer import ViewerPool
from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api, make_config, running_server
from tests.helpers.srt_tools import (
    RawCaller,
    ffmpeg_publisher,
    ffmpeg_read,
    libsrt_threads,
    srt_threads,
    srt_url,
    wait_until,
)
from tests.helpers.whep import wait_live, whep_offer
from trio_core.config.settings import SettingError
from trio_core.srt import subsystem as srt_subsystem
from trio_core.srt.binding import SrtUnavailable
from trio_core.srt.hub import Hub
from trio_core.srt.server import SrtServer
from trio_core.srt.subsystem import SrtSubsystem

TOKEN = "s3cret"


def srt_process(process_id: str, name: str) -> dict[str, Any]:
    return {
        "id": process_id,
        "options": ["-loglevel", "level+info"],
        "input": [{"id": "in", "address": f"{{srt,name={name}}}", "options": []}],
        "output": [{"id": "null", "address": "-",
                    "options": ["-map", "0:v", "-c", "copy", "-f", "null"]}],
        "webrtc": {"enabled": True},
        "reconnect": True,
        "reconnect_delay_seconds": 1,
    }


def garbage_datagrams(rng: random.Random) -> list[bytes]:
    """Random bytes, truncated and bogus SRT handshakes, data for unknown sockets."""
    out = [rng.randbytes(rng.randint(1, 1500)) for _ in range(150)]
    out += [b"\x80", b"\x80\x00", b"\x80\x00\x00\x00" + bytes(4)]  # truncated control headers
    for _ in range(100):
        # control packet, type 0 (handshake), random fields: version 4/5, bogus cookies/ids
        header = struct.pack("!HHIII", 0x8000, 0, 0, rng.getrandbits(32), rng.choice([0, 1]))
        body = struct.pack("!IHHIIIiII", rng.choice([4, 5, 0x7FFFFFFF]), 2, 0x4A17,
                           rng.getrandbits(31), 1500, 8192, rng.choice([1, 0, -1, -2]),
                           rng.getrandbits(32), rng.getrandbits(32))
        out.append(header + body + rng.randbytes(rng.randint(0, 64)))
    # data packets (top bit clear) addressed to random socket ids
    out += [struct.pack("!IIII", rng.getrandbits(31), 0, 0, rng.getrandbits(32))
            + rng.randbytes(1316) for _ in range(100)]
    out.append(rng.randbytes(60000))
    return out


async def srt_channels(api: Api) -> dict[str, Any]:
    resp = await api.get("/api/v3/srt")
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.slow
async def test_srt_ingest_to_whep_and_subscribers_refusals_garbage_and_recovery(
        ffmpeg: str, tmp_path, caplog) -> None:
    config = make_config(tmp_path, ffmpeg, **{
        "webrtc.enable": True, "srt.enable": True, "srt.address": "127.0.0.1:0",
        "srt.token": TOKEN})
    assert libsrt_threads() == []
    async with trio.open_nursery() as nursery, running_server(config) as srv:
        api = Api(srv.url)
        server: SrtServer = srv.subsystem(SrtSubsystem).server
        port = server.port
        assert port
        publish = srt_url(port, f"cam1,mode:publish,token:{TOKEN}")
        request = srt_url(port, f"cam1,token:{TOKEN}")
        async with ffmpeg_publisher(ffmpeg, publish, tmp_path / "pub1.log"):
            channels = await wait_until(
                lambda: _published(api, "cam1"), 20, "cam1 to be published")
            first_publisher = channels["publisher"]["cam1"]

            # a process reads {srt,name=cam1} and serves WHEP; aiortc decodes it
            assert (await api.post("/api/v3/process", srt_process("cam", "cam1"))).status_code == 200
            await wait_live(api, "cam", timeout=40)
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "3"], timeout=60)
            assert result["error"] is None, result
            assert result["video_frames"] >= 25, result
            assert (result["width"], result["height"]) == (320, 240)
            assert result["audio_samples"] >= 24000, result  # AAC -> Opus, decoded

            # GET /api/v3/srt in Core's shape: the process is a subscriber with stats
            channels = await srt_channels(api)
            assert set(channels) == {"publisher", "subscriber", "connections", "log"}
            assert channels["publisher"] == {"cam1": first_publisher}
            [process_sub] = channels["subscriber"]["cam1"]
            pub_stats = channels["connections"][str(first_publisher)]["stats"]
            sub_stats = channels["connections"][str(process_sub)]["stats"]
            assert pub_stats["recv_bytes"] > 100_000 and pub_stats["recv_pkt"] > 100
            assert sub_stats["sent_bytes"] > 50_000
            assert channels["connections"][str(first_publisher)]["log"] == {}

            # garbage on the SRT port: dropped by libsrt (with a rate-limited log line),
            # the stream goes on
            rng = random.Random(11)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk, \
                    caplog.at_level(logging.WARNING, logger="trio_core.srt.libsrt"):
                junk.bind(("127.0.0.1", 0))
                junk_ip, junk_port = junk.getsockname()
                junk_addr = f"{junk_ip}:{junk_port}"
                for datagram in garbage_datagrams(rng):
                    junk.sendto(datagram, ("127.0.0.1", port))
                    await trio.sleep(0)
                await wait_until(
                    lambda: any(f"SRT handshake from {junk_addr} rejected" in r.getMessage()
                                for r in caplog.records), 10, "the garbage to be logged")
            dropped_lines = [r for r in caplog.records if junk_addr in r.getMessage()]
            assert len(dropped_lines) <= 20  # ~100 bogus handshakes, rate-limited to 10/s

            # a second FFmpeg subscribes and decodes
            rc, frames, err = await ffmpeg_read(ffmpeg, request, frames=25)
            assert (rc, frames) == (0, 25), err

            # wrong / missing token, a name nobody publishes: refused, nothing decoded
            refused: list[tuple[int, int, str]] = []

            async def refused_read(streamid: str) -> None:
                refused.append(await ffmpeg_read(ffmpeg, srt_url(port, streamid), timeout=20))

            async with trio.open_nursery() as readers:
                for bad in ("cam1,token:wrong", "cam1", f"nobody,token:{TOKEN}"):
                    readers.start_soon(refused_read, bad)
            assert [(rc != 0, frames) for rc, frames, _ in refused] == [(True, 0)] * 3
            statuses = [(e.handler, e.status, e.message) for e in server.events]
            assert ("CONNECT", "FORBIDDEN", "invalid token") in statuses
            assert ("CONNECT", "FORBIDDEN", "token required") in statuses
            assert any(e.status == "NOTFOUND" and e.resource == "nobody" for e in server.events)

            # a second publisher is refused; the first keeps going
            before = (await srt_channels(api))["connections"][str(first_publisher)]["stats"]
            async with ffmpeg_publisher(ffmpeg, publish, tmp_path / "pub2.log") as second:
                with trio.fail_after(20):
                    await second.wait()
                assert second.returncode != 0
            assert any(e.status == "CONFLICT" and e.resource == "cam1" for e in server.events)
            await trio.sleep(1.0)
            channels = await srt_channels(api)
            assert channels["publisher"] == {"cam1": first_publisher}
            after = channels["connections"][str(first_publisher)]["stats"]
            assert after["recv_bytes"] > before["recv_bytes"] + 10_000

            # a lightweight WebRTC viewer that stays through the publisher's restart
            pool = ViewerPool(probes=0)
            await nursery.start(pool.run)
            viewer = pool.new_viewer()
            resp = await whep_offer(api, "cam", viewer.make_offer())
            assert resp.status_code == 201, resp.text
            viewer.accept_answer(resp.text)
            assert await pool.establish(viewer)
            # the viewer learns a track from its first RTP packet (audio may come first)
            await wait_until(lambda: any(t.kind == "video" for t in viewer.tracks.values()), 20,
                             "a video track for the viewer")
            [video] = [t for t in viewer.tracks.values() if t.kind == "video"]
            await wait_until(lambda: video.received > 50, 20, "video for the viewer")

        # publisher gone: the process's subscription ends with it
        await wait_until(lambda: not server.channels()["publisher"], 10, "the publisher to go")
        process = srv.supervisor.get("cam")
        runs = process.runs
        await trio.sleep(2.0)  # the process retries and is refused (NOTFOUND) meanwhile
        received = video.received

        # publisher back: the process reconnects, the same viewer gets video again
        async with ffmpeg_publisher(ffmpeg, publish, tmp_path / "pub3.log"):
            await wait_until(lambda: video.received > received + 50, 40,
                             "video again after the publisher came back")
            assert process.runs > runs
            assert server.channels()["publisher"]["cam1"] != first_publisher
            # aiortc decodes the recovered stream too
            result = await run_aiortc_viewer(
                ["--whep", f"{srv.url}/api/v3/process/cam/whep", "--duration", "2",
                 "--video-only"], timeout=60)
            assert result["error"] is None and result["video_frames"] >= 15, result
        nursery.cancel_scope.cancel()
    assert srt_threads() == []
    assert libsrt_threads() == []  # srt_cleanup joined libsrt's own threads


async def _published(api: Api, name: str) -> dict[str, Any] | None:
    channels = await srt_channels(api)
    return channels if name in channels["publisher"] else None


@pytest.mark.slow
async def test_passphrase_is_required_and_checked(ffmpeg: str, tmp_path, caplog) -> None:
    server = SrtServer(address="127.0.0.1:0", passphrase="correct horse")
    plain = SrtServer(address="127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        plain_port = await nursery.start(plain.run)
        # no passphrase / wrong passphrase: refused during the handshake (libsrt says why);
        # an encrypted caller to a server without passphrase: refused too (Core's rule)
        cases = [
            (port, {}, "Password required or unexpected"),
            (port, {"passphrase": "wrong-horse-battery"}, "Incorrect passphrase"),
            (plain_port, {"passphrase": "some-pass-phrase"}, "Password required or unexpected"),
        ]
        for target, query, reason in cases:
            with caplog.at_level(logging.WARNING, logger="trio_core.srt.libsrt"):
                caplog.clear()
                async with ffmpeg_publisher(ffmpeg, srt_url(target, "enc,mode:publish", **query),
                                            tmp_path / "refused.log") as proc:
                    with trio.fail_after(20):
                        await proc.wait()
                await trio.sleep(1.0)  # the log's rate limit refills between cases
            assert proc.returncode != 0
            assert any(reason in r.getMessage() for r in caplog.records), caplog.text
        assert server.channels()["publisher"] == {} and plain.channels()["publisher"] == {}
        good = srt_url(port, "enc,mode:publish", passphrase="correct+horse")
        async with ffmpeg_publisher(ffmpeg, good, tmp_path / "pub.log"):
            await wait_until(lambda: "enc" in server.channels()["publisher"], 20, "publisher")
            rc, frames, err = await ffmpeg_read(
                ffmpeg, srt_url(port, "enc", passphrase="correct+horse"), frames=10)
            assert (rc, frames) == (0, 10), err
            rc, frames, _ = await ffmpeg_read(ffmpeg, srt_url(port, "enc"), timeout=20)
            assert rc != 0 and frames == 0
            assert libsrt_threads()  # while serving, libsrt runs its threads
        nursery.cancel_scope.cancel()
    assert srt_threads() == [] and libsrt_threads() == []


@pytest.mark.slow
async def test_a_slow_subscriber_is_dropped_without_disturbing_the_others(
        ffmpeg: str, tmp_path) -> None:
    server = SrtServer(address="127.0.0.1:0", hub=Hub(max_backlog_ms=1500))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        async with ffmpeg_publisher(ffmpeg, srt_url(port, "live,mode:publish"),
                                    tmp_path / "pub.log"):
            await wait_until(lambda: server.channels()["publisher"], 20, "publisher")
            slow = RawCaller()
            try:
                # connects, never reads; without receiver-side drops its data piles up
                await slow.connect(port, "live", SRTO_TLPKTDROP=0, SRTO_RCVBUF=100_000)
                good: dict[str, Any] = {}

                async def read() -> None:
                    good["result"] = await ffmpeg_read(ffmpeg, srt_url(port, "live"),
                                                       frames=200, timeout=60)

                nursery.start_soon(read)
                await wait_until(
                    lambda: any(e.status == "DROP" for e in server.events), 30,
                    "the slow subscriber to be dropped")
                [drop] = [e for e in server.events if e.status == "DROP"]
                assert drop.handler == "SUBSCRIBE" and "too slow" in drop.message
                assert len(server.channels()["subscriber"]["live"]) == 1  # the good reader
                pub = server.channels()["publisher"]["live"]
                recv_before = server.channels()["connections"][str(pub)]["stats"]["recv_pkt"]
                await trio.sleep(1.5)
                recv_after = server.channels()["connections"][str(pub)]["stats"]["recv_pkt"]
                assert recv_after > recv_before + 30  # the publisher goes on (~40 packets/s)
                await wait_until(lambda: "result" in good, 60, "the good reader")
                rc, frames, err = good["result"]
                assert (rc, frames) == (0, 200), err  # 8 s of video, start to end, undisturbed
            finally:
                slow.close()
        nursery.cancel_scope.cancel()


async def test_missing_libsrt_disables_the_subsystem_only(
        ffmpeg: str, tmp_path, monkeypatch, caplog) -> None:
    def unavailable() -> None:
        raise SrtUnavailable("libsrt not found (install Debian's libsrt1.5-openssl): test")

    monkeypatch.setattr(srt_subsystem, "load", unavailable)
    config = make_config(tmp_path, ffmpeg, **{"srt.enable": True, "srt.address": "127.0.0.1:0"})
    with caplog.at_level(logging.ERROR, logger="trio_core.srt.subsystem"):
        async with running_server(config) as srv:
            api = Api(srv.url)
            assert (await api.get("/api/v3/srt")).status_code == 503  # issue 22 item 14
            assert (await api.get("/api/v3/process")).status_code == 200
            assert "srt" not in srv.supervisor.placeholders
    assert any("SRT server disabled" in r.getMessage() and "libsrt1.5-openssl" in r.getMessage()
               for r in caplog.records)


async def test_srt_disabled_by_default_and_startup_problems_are_logged(
        ffmpeg: str, tmp_path, caplog) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        assert (await Api(srv.url).get("/api/v3/srt")).status_code == 404
    # a port that is taken (by another SRT listener): logged, the rest of the server runs
    taken = SrtServer(address="127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(taken.run)
        config = make_config(tmp_path, ffmpeg, **{"srt.enable": True,
                                                  "srt.address": f"127.0.0.1:{port}"})
        with caplog.at_level(logging.ERROR, logger="trio_core.srt.subsystem"):
            async with running_server(config) as srv:
                assert (await Api(srv.url).get("/api/v3/process")).status_code == 200
                assert "srt" not in srv.supervisor.placeholders
        assert any("cannot listen" in r.getMessage() for r in caplog.records)
        nursery.cancel_scope.cancel()
    # a passphrase libsrt would refuse (< 10 characters): the config is refused (issue 22 item 8)
    with pytest.raises(SettingError, match="10 to 79 characters"):
        make_config(tmp_path, ffmpeg, **{"srt.enable": True, "srt.address": "127.0.0.1:0",
                                         "srt.passphrase": "short"})


@pytest.mark.slow
async def test_a_process_publishes_through_the_output_placeholder(ffmpeg: str, tmp_path) -> None:
    """``{srt,name=X}`` in an output: mode:publish, token and (URL-encoded) passphrase in
    FFmpeg's own srt:// syntax; an FFmpeg subscriber decodes what the process pushes."""
    passphrase = "correct horse battery"  # a space: FFmpeg 5.1 did not read "%20"
    config = make_config(tmp_path, ffmpeg, **{
        "srt.enable": True, "srt.address": "127.0.0.1:0", "srt.token": TOKEN,
        "srt.passphrase": passphrase})
    async with running_server(config) as srv:
        api = Api(srv.url)
        server: SrtServer = srv.subsystem(SrtSubsystem).server
        process = {
            "id": "pusher",
            "input": [{"id": "in", "address": "testsrc=size=320x240:rate=25",
                       "options": ["-re", "-f", "lavfi"]}],
            "output": [{"id": "out", "address": "{srt,name=fromproc}",
                        "options": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                                    "-threads", "1", "-f", "mpegts"]}],
        }
        assert (await api.post("/api/v3/process", process)).status_code == 200
        assert (await api.put("/api/v3/process/pusher/command",
                              {"command": "start"})).status_code == 200
        await wait_until(lambda: "fromproc" in server.channels()["publisher"], 30,
                         "the process to publish")
        cmd = (await api.get("/api/v3/process/pusher/state")).json()["command"]
        [url] = [a for a in cmd if a.startswith("srt://")]
        assert url == (f"srt://127.0.0.1:{server.port}?mode=caller&transtype=live&latency=20000"
                       f"&streamid=fromproc,mode:publish,token:{TOKEN}"
                       "&passphrase=correct+horse+battery")
        rc, frames, err = await ffmpeg_read(
            ffmpeg, srt_url(server.port, f"fromproc,token:{TOKEN}",
                            passphrase="correct+horse+battery"), frames=10)
        assert (rc, frames) == (0, 10), err


@pytest.mark.slow
async def test_srt_connections_are_sessions_of_the_srt_collector(ffmpeg: str, tmp_path) -> None:
    """A real FFmpeg publisher (ingress) and subscriber (egress) in
    ``/api/v3/session/active?collectors=srt`` with growing bytes, as Core accounts them;
    a subscriber that leaves ends its session (history)."""
    config = make_config(tmp_path, ffmpeg, **{
        "srt.enable": True, "srt.address": "127.0.0.1:0", "sessions.ip_ignorelist": []})
    async with running_server(config) as srv:
        api = Api(srv.url)
        port = srv.subsystem(SrtSubsystem).server.port
        assert port

        async def active() -> dict[str, dict[str, Any]]:
            resp = await api.get("/api/v3/session/active?collectors=srt")
            assert resp.status_code == 200, resp.text
            return {s["local"]: s for s in resp.json()["srt"]}

        async with ffmpeg_publisher(ffmpeg, srt_url(port, "live,mode:publish"),
                                    tmp_path / "pub.log"):
            publisher = await wait_until(
                lambda: _session_with(active, "publish:live", "bytes_rx", 20_000), 30,
                "the publisher's session")
            assert publisher["id"] == "live" and publisher["reference"] == "live"
            assert publisher["remote"].startswith("127.0.0.1:")

            reader = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
                      "-i", srt_url(port, "live"), "-t", "60", "-f", "null", "-"]
            async with trio.open_nursery() as reading:
                reading.start_soon(partial(trio.run_process, reader, check=False,
                                           capture_stderr=True))
                player = await wait_until(
                    lambda: _session_with(active, "play:live", "bytes_tx", 20_000), 30,
                    "the subscriber's session")
                assert player["id"] == player["remote"] and player["id"].startswith("127.0.0.1:")
                assert player["reference"] == "live"
                more = player["bytes_tx"] + 20_000
                grown = await wait_until(
                    lambda: _session_with(active, "play:live", "bytes_tx", more), 30,
                    "the subscriber's bytes to grow")
                assert grown["id"] == player["id"]
                assert (await active())["publish:live"]["bytes_rx"] > publisher["bytes_rx"]
                reading.cancel_scope.cancel()

            async def player_gone() -> bool:
                return "play:live" not in await active()

            await wait_until(player_gone, 20, "the subscriber's session to end")
            summary = (await api.get("/api/v3/session?collectors=srt")).json()["srt"]
            assert summary["summary"]["sessions"] == 1  # the subscriber, in the history
            assert summary["summary"]["reference"]["live"]["traffic_tx_mb"] >= 0
            assert summary["active"]["sessions"] == 1  # the publisher goes on


async def _session_with(active: Any, location: str, field: str, minimum: int
                        ) -> dict[str, Any] | None:
    session = (await active()).get(location)
    return session if session is not None and session[field] > minimum else None
