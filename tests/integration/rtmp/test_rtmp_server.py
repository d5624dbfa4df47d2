"""The RTMP server inside trio-core: real FFmpeg publishers and players, the HTTP API.

FFmpeg pushes H264 + AAC as OBS does (``-f flv rtmp://…``); a second FFmpeg plays and
decodes; tokens, a second publisher and the API listing are checked against Core's rules.
"""

from __future__ import annotations

import pytest
import trio

from tests.helpers.api import Api, make_config
from tests.helpers.rtmp import (
    play_frames,
    publisher_argv,
    rtmp_server,
    run_ffmpeg,
    start_ffmpeg,
    wait_listed,
)
from trio_core.rtmp.subsystem import RtmpSubsystem


@pytest.mark.slow
async def test_publish_play_token_and_conflict(ffmpeg: str, tmp_path) -> None:
    async with trio.open_nursery() as nursery, rtmp_server(
            tmp_path, ffmpeg, **{"rtmp.token": "secret"}) as (srv, port):
        api = Api(srv.url)
        assert (await api.get("/api/v3/rtmp")).json() == []
        base = f"rtmp://127.0.0.1:{port}"
        publisher = await start_ffmpeg(nursery, publisher_argv(ffmpeg, f"{base}/live/x?token=secret"))
        await wait_listed(api, "/live/x")
        assert (await api.get("/api/v3/rtmp")).json() == [{"name": "/live/x"}]

        # a player with the token as the last path element decodes video and sees audio
        rc, frames, err = await play_frames(ffmpeg, f"{base}/live/x/secret", 2)
        assert rc == 0, err[-2000:]
        assert frames >= 40, err[-2000:]
        assert b"Video: h264" in err and b"Audio: aac" in err

        # wrong or missing token: refused for play and publish; nothing new is listed
        rc, frames, err = await play_frames(ffmpeg, f"{base}/live/x?token=wrong", 1)
        assert rc != 0 and frames == 0, err[-2000:]
        rc, frames, err = await play_frames(ffmpeg, f"{base}/live/x", 1)
        assert rc != 0 and frames == 0, err[-2000:]
        rc, err = await run_ffmpeg(publisher_argv(ffmpeg, f"{base}/live/y?token=wrong", seconds=3))
        assert rc != 0, err[-2000:]
        assert b"Rejected" in err or b"error" in err.lower()

        # a second publisher on the same path is refused; the first one keeps going
        rc, err = await run_ffmpeg(publisher_argv(ffmpeg, f"{base}/live/x?token=secret", seconds=3))
        assert rc != 0, err[-2000:]
        assert b"already being published" in err, err[-2000:]
        assert publisher.returncode is None
        assert [c["name"] for c in (await api.get("/api/v3/rtmp")).json()] == ["/live/x"]
        rc, frames, err = await play_frames(ffmpeg, f"{base}/live/x?token=secret", 2)
        assert rc == 0 and frames >= 40, err[-2000:]

        # publisher gone -> the path is no longer listed and playing it is refused
        publisher.terminate()
        await wait_listed(api, "/live/x", present=False)
        rc, frames, err = await play_frames(ffmpeg, f"{base}/live/x/secret", 1)
        assert rc != 0 and frames == 0


async def test_app_is_required_for_publishing(ffmpeg: str, tmp_path) -> None:
    async with rtmp_server(tmp_path, ffmpeg, **{"rtmp.app": "/live"}) as (srv, port):
        api = Api(srv.url)
        rc, err = await run_ffmpeg(publisher_argv(ffmpeg, f"rtmp://127.0.0.1:{port}/other/x", seconds=2))
        assert rc != 0 and b"invalid app" in err, err[-2000:]
        assert (await api.get("/api/v3/rtmp")).json() == []


async def test_api_needs_auth_when_enabled(ffmpeg: str, tmp_path) -> None:
    async with rtmp_server(tmp_path, ffmpeg, **{
            "api.auth.enable": True, "api.auth.username": "u", "api.auth.password": "p"}) as (srv, _):
        resp = await Api(srv.url).get("/api/v3/rtmp")
        assert resp.status_code == 401


def write_self_signed(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


async def test_rtmps_publish_and_rtmp_play(ffmpeg: str, tmp_path) -> None:
    cert, key = write_self_signed(tmp_path)
    async with trio.open_nursery() as nursery, rtmp_server(tmp_path, ffmpeg, **{
            "rtmp.enable_tls": True, "rtmp.address_tls": "127.0.0.1:0",
            "tls.cert_file": cert, "tls.key_file": key}) as (srv, port):
        api = Api(srv.url)
        tls_port = srv.subsystem(RtmpSubsystem).server.tls_ports[0]
        assert tls_port != port
        # FFmpeg 9 verifies the server certificate: trust ours explicitly
        await start_ffmpeg(nursery, publisher_argv(ffmpeg, f"rtmps://127.0.0.1:{tls_port}/live/s",
                                                   extra=("-ca_file", cert)))
        await wait_listed(api, "/live/s")
        rc, frames, err = await play_frames(ffmpeg, f"rtmp://127.0.0.1:{port}/live/s", 2)
        assert rc == 0 and frames >= 40, err[-2000:]
        rc, err = await run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-ca_file", cert, "-i",
                                    f"rtmps://127.0.0.1:{tls_port}/live/s", "-t", "2", "-map", "0:v",
                                    "-f", "null", "-"])
        assert rc == 0 and b"Video: h264" in err, err[-2000:]
        # a verifying client that does not trust the certificate refuses, and the server logs
        # and goes on (FFmpeg 9 verifies by default, 5.1 only with -tls_verify 1: ask for it)
        rc, err = await run_ffmpeg([ffmpeg, "-hide_banner", "-nostdin", "-tls_verify", "1", "-i",
                                    f"rtmps://127.0.0.1:{tls_port}/live/s", "-t", "1", "-map",
                                    "0:v", "-f", "null", "-"])
        assert rc != 0 and b"Video: h264" not in err, err[-2000:]
        assert "/live/s" in [c["name"] for c in (await api.get("/api/v3/rtmp")).json()]
        nursery.cancel_scope.cancel()


def test_rtmps_without_certificate_refuses_to_start(ffmpeg: str, tmp_path) -> None:
    import pytest

    from trio_core.config.startup_error import StartupError
    from trio_core.rtmp.subsystem import rtmp_server

    config = make_config(tmp_path, ffmpeg, **{"rtmp.enable": True, "rtmp.enable_tls": True})
    with pytest.raises(StartupError, match="tls.cert_file"):
        rtmp_server(config)
    with pytest.raises(StartupError, match="rtmp.app"):
        rtmp_server(make_config(tmp_path, ffmpeg, **{"rtmp.enable": True, "rtmp.app": "live"}))


@pytest.mark.slow
async def test_restreamer_ui_style_process_publishes_through_the_placeholder(ffmpeg: str, tmp_path) -> None:
    """Restreamer UI's shape: the channel process outputs to ``[f=flv]{rtmp,name=<ch>.stream}``
    through the tee muxer; players then pull ``rtmp://host/<ch>.stream?token=…``."""
    async with rtmp_server(tmp_path, ffmpeg, **{"rtmp.token": "t0k"}) as (srv, port):
        api = Api(srv.url)
        process = {
            "id": "restreamer-ui:ingest:ch1",
            "options": ["-loglevel", "level+info"],
            "input": [{"id": "video", "address": "testsrc2=size=320x240:rate=25",
                       "options": ["-re", "-f", "lavfi"]}],
            "output": [{"id": "out", "address": "[f=flv]{rtmp,name=ch1.stream}",
                        "options": ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                                    "-g", "25", "-flags", "+global_header", "-tag:v", "7",
                                    "-f", "tee"]}],
            "reconnect": True, "reconnect_delay_seconds": 1, "autostart": True,
        }
        resp = await api.post("/api/v3/process", process)
        assert resp.status_code == 200, resp.text
        try:
            await wait_listed(api, "/ch1.stream", timeout=30)
        except trio.TooSlowError:
            report = (await api.get("/api/v3/process/restreamer-ui:ingest:ch1/report")).json()
            raise AssertionError(report) from None
        state = (await api.get("/api/v3/process/restreamer-ui:ingest:ch1/state")).json()
        assert f"[f=flv]rtmp://127.0.0.1:{port}/ch1.stream?token=t0k" in state["command"]
        rc, frames, err = await play_frames(ffmpeg, f"rtmp://127.0.0.1:{port}/ch1.stream?token=t0k", 2)
        assert rc == 0 and frames >= 40, err[-2000:]


async def test_ffmpeg_verifies_our_digest_handshake(ffmpeg: str) -> None:
    """FFmpeg sends a C1 with a client version and digest and, when playing, checks the
    server's S1 digest and S2 signature before it sends C2 ("Signature mismatch" otherwise)."""
    from rtmp.handshake import CLIENT_PARTIAL_KEY, HANDSHAKE_SIZE, ServerHandshake, find_digest

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery, listeners[0]:
        nursery.start_soon(run_ffmpeg, [ffmpeg, "-hide_banner", "-rw_timeout", "5000000",
                                        "-i", f"rtmp://127.0.0.1:{port}/live/x", "-f", "null", "-"])
        with trio.fail_after(20):
            stream = await listeners[0].accept()
            data = b""
            while len(data) < 1 + HANDSHAKE_SIZE:
                data += await stream.receive_some(65536)
            assert data[5:9] != bytes(4) and find_digest(data[1:1 + HANDSHAKE_SIZE], CLIENT_PARTIAL_KEY)
            handshake = ServerHandshake()
            await stream.send_all(handshake.receive_data(data))
            assert handshake.complex
            c2 = b""
            while len(c2) < HANDSHAKE_SIZE:
                chunk = await stream.receive_some(65536)
                assert chunk, "FFmpeg refused our S1/S2"
                c2 += chunk
            handshake.receive_data(c2)
            assert handshake.done
        await stream.aclose()


