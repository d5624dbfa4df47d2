"""A small aiortc WHEP server for comparison (asyncio, own process).

Media path: aiortc's ``MediaPlayer`` opens an SDP file describing the RTP the tee forwards
(libavformat's RTP demuxer) with ``decode=False``, so H264 and Opus stay encoded; one
``MediaRelay`` shares each track among viewers, and each viewer's ``RTCRtpSender``
re-packetizes the encoded frames itself (``H264Encoder.pack`` / ``OpusEncoder.pack``) and
encrypts them. So: no decoding, but per-viewer packetization (aiortc has no API to forward
the source's RTP packets as they are). A background consumer keeps the player reading so the
first viewer does not wait for stream probing.

WHEP: ``POST /whep`` (application/sdp offer) -> ``201`` + answer + ``Location``;
``DELETE /whep/<id>`` -> ``200``. ICE host candidates are limited to 127.0.0.1 (aioice skips
loopback by default).

Run: ``python -m bench.aiortc_server --port P --info ports.json --workdir DIR``; it writes
``{"video": port, "audio": port}`` to ``--info`` once listening, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import signal
from pathlib import Path

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay

from bench.common import AUDIO_PT, VIDEO_PT, free_udp_pair

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


def input_sdp(video_port: int, audio_port: int) -> str:
    return (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=video {video_port} RTP/AVP {VIDEO_PT}\r\n"
        f"a=rtpmap:{VIDEO_PT} H264/90000\r\n"
        f"a=fmtp:{VIDEO_PT} packetization-mode=1\r\n"
        f"m=audio {audio_port} RTP/AVP {AUDIO_PT}\r\n"
        f"a=rtpmap:{AUDIO_PT} opus/48000/2\r\n"
    )


class App:
    def __init__(self, player: MediaPlayer) -> None:
        self.player = player
        self.relay = MediaRelay()
        self.pcs: dict[str, RTCPeerConnection] = {}

    async def whep(self, offer_sdp: str) -> tuple[str, str]:
        pc = RTCPeerConnection()
        sid = secrets.token_hex(8)
        self.pcs[sid] = pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                self.pcs.pop(sid, None)

        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for t in pc.getTransceivers():
            if t.kind == "video" and self.player.video is not None:
                pc.addTrack(self.relay.subscribe(self.player.video, buffered=False))
            elif t.kind == "audio" and self.player.audio is not None:
                pc.addTrack(self.relay.subscribe(self.player.audio, buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        return sid, pc.localDescription.sdp

    async def delete(self, sid: str) -> bool:
        pc = self.pcs.pop(sid, None)
        if pc is None:
            return False
        await pc.close()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = 404, {}, b""
                if method == "POST" and path == "/whep":
                    try:
                        sid, answer = await self.whep(body.decode())
                        status, payload = 201, answer.encode()
                        extra = {"Content-Type": "application/sdp", "Location": f"/whep/{sid}"}
                    except Exception as exc:  # report, keep serving
                        status, payload = 400, str(exc).encode()
                elif method == "DELETE" and path.startswith("/whep/"):
                    status = 200 if await self.delete(path.rsplit("/", 1)[1]) else 404
                elif method == "GET":
                    status, payload = 200, b"ok"
                reason = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found"}[status]
                hdrs = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(payload)}\r\n{hdrs}\r\n"
                    .encode() + payload
                )  # fmt: skip
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def drain(track: object) -> None:
    """Keep the player's track consumed so the stream stays open between viewers."""
    try:
        while True:
            await track.recv()  # type: ignore[attr-defined]
    except Exception:
        return


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--info", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    vport = free_udp_pair()
    aport = free_udp_pair()
    while aport in (vport, vport + 1):
        aport = free_udp_pair()
    sdp_path = Path(args.workdir) / "aiortc-input.sdp"
    sdp_path.write_text(input_sdp(vport, aport))
    # the ports are announced first: opening the SDP input blocks until RTP arrives
    Path(args.info).write_text(json.dumps({"video": vport, "audio": aport}))
    player = MediaPlayer(
        str(sdp_path),
        format="sdp",
        options={"protocol_whitelist": "file,udp,rtp", "reorder_queue_size": "0",
                 "fflags": "nobuffer", "probesize": "200000", "analyzeduration": "0"},
        decode=False,
    )  # fmt: skip
    player._throttle_playback = False  # live input: never sleep on timestamps
    app = App(player)
    server = await asyncio.start_server(app.handle, "127.0.0.1", args.port)
    relay_sink = []
    for track in (player.video, player.audio):
        if track is not None:
            sink = app.relay.subscribe(track, buffered=False)
            relay_sink.append(asyncio.ensure_future(drain(sink)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()
    for pc in list(app.pcs.values()):
        await pc.close()
    for t in relay_sink:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
