"""``{whip,name=…}``: WHIP channels as an input FFmpeg can read (SDP + RTP over loopback).

:class:`SdpFeeds` runs a small loopback HTTP listener. The ``{whip}`` placeholder is
``http://127.0.0.1:<port>/<secret>/{name}.sdp``; FFmpeg opens it as an input (its SDP
demuxer recognises the description; the ``http`` protocol's default whitelist lets the
description open ``rtp``/``udp``, so no ``-protocol_whitelist`` is needed). Each GET of a
channel with a live Source opens a *feed*: the answer describes the channel's tracks (H264
with ``profile-level-id`` and the in-band ``sprop-parameter-sets`` the Source learned, VP8,
Opus) on fresh loopback ports, then the feed sends the channel's packets there — first the
cached GOP, paced, then live packets (the Source hands them to it as to a viewer on its slow
path, ``forward``), with its own fixed SSRC and payload types and the Source's restart-proof
sequence numbers and timestamps, so FFmpeg sees one continuous stream across publisher
comebacks. The publisher is asked for a keyframe when a feed starts.

The ports are chosen by binding and releasing them (FFmpeg binds what the SDP names; there
is a short window in which another program could take a port — loopback only). A feed ends
when its Source closes, or when FFmpeg is gone: the feed's sockets are connected, so the
kernel reports the ICMP port-unreachable of a port nobody listens on
(:data:`GONE_AFTER` consecutive refusals, after a :data:`GRACE` seconds start); a channel
without a publisher returns 404, which fails the process's start (its reconnect retries).

Cancellation: :meth:`SdpFeeds.run` owns the listener and every feed (each a task in its
nursery); cancelling it closes them all.
"""

from __future__ import annotations

import base64
import logging
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from rtp.packet import rewrite

if TYPE_CHECKING:
    from rtp.media import SourcePacket
    from rtp.source import Source
    from trio_core.whip.channels import WhipChannels

__all__ = ["Feed", "SdpFeeds", "describe"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 8192
START_DELAY = 0.3  # FFmpeg binds the ports right after it read the description
GRACE = 5.0
GONE_AFTER = 50
BURST_PACKETS = 32
BURST_PAUSE = 0.002
PAYLOAD_TYPES = {"video": 96, "audio": 97}
MAX_FEEDS = 64


def _free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """An even port P with P and P+1 free (FFmpeg binds P for RTP and P+1 for RTCP)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind((host, 0))
            port = a.getsockname()[1]
            if port % 2 or port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind((host, port + 1))
                except OSError:
                    continue
                return port
    raise OSError("no free loopback UDP port pair")


def describe(name: str, source: Source, ports: dict[str, int]) -> str:
    """The SDP FFmpeg reads: one ``m=`` line per track of ``source`` on ``ports``."""
    lines = ["v=0", "o=- 0 0 IN IP4 127.0.0.1", f"s=whip {name}", "c=IN IP4 127.0.0.1",
             "t=0 0"]
    for kind, port in ports.items():
        track = source.tracks[kind]
        pt = PAYLOAD_TYPES[kind]
        codec = track.codec
        lines += [f"m={kind} {port} RTP/AVP {pt}", f"a=rtpmap:{pt} {codec.rtpmap()}"]
        if codec.mime == "H264":
            fmtp = ["packetization-mode=1"]
            if track.profile_level_id:
                fmtp.append(f"profile-level-id={track.profile_level_id}")
            sprop = source.state[kind].sprop
            if sprop:
                fmtp.append("sprop-parameter-sets="
                            + ",".join(base64.b64encode(u).decode() for u in sprop))
            lines.append(f"a=fmtp:{pt} {';'.join(fmtp)}")
        elif codec.mime == "OPUS":
            lines.append(f"a=fmtp:{pt} sprop-stereo=1")
    return "\r\n".join(lines) + "\r\n"


class Feed:
    """One FFmpeg reading one channel (a listener of the channel's Source)."""

    def __init__(self, name: str, source: Source, ports: dict[str, int]) -> None:
        self.name = name
        self.source = source
        self.ports = ports
        self.ssrc = {kind: secrets.randbits(31) or 1 for kind in ports}
        self.socks: dict[str, socket.socket] = {}
        self.created = trio.current_time()
        self.closed = False
        self.refused = 0
        self.packets = 0
        self.dropped = 0
        self._pending: list[SourcePacket] | None = []

    def open(self) -> None:
        for kind, port in self.ports.items():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
            self.socks[kind] = sock

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.source.listeners:
            self.source.listeners.remove(self)
        for sock in self.socks.values():
            sock.close()

    def forward(self, pkt: SourcePacket) -> None:
        """A live packet from the Source (queued while the GOP goes out)."""
        if self._pending is not None:
            self._pending.append(pkt)
            return
        self._send(pkt)

    def _send(self, pkt: SourcePacket) -> None:
        sock = self.socks.get(pkt.kind)
        if sock is None or self.closed:
            return
        data = rewrite(pkt.data, PAYLOAD_TYPES[pkt.kind], pkt.seq, pkt.ts, self.ssrc[pkt.kind])
        try:
            sock.send(data)
        except BlockingIOError:
            self.dropped += 1
            return
        except ConnectionRefusedError:
            self.refused += 1
            if self.refused >= GONE_AFTER and trio.current_time() - self.created > GRACE:
                log.info("WHIP: the reader of %r is gone (port unreachable)", self.name)
                self.close()
            return
        except OSError:
            self.dropped += 1
            return
        self.refused = 0
        self.packets += 1

    async def run(self) -> None:
        """Send the cached GOP, then live packets until closed; close at the end."""
        try:
            await trio.sleep(START_DELAY)
            video = self.source.state.get("video")
            gop = list(video.gop) if video is not None and "video" in self.ports else []
            self.source.listeners.append(self)  # live packets queue in _pending meanwhile
            upstream = self.source.upstream
            if upstream is not None:
                upstream.request_keyframe(trio.current_time())
            for start in range(0, len(gop), BURST_PACKETS):
                for pkt in gop[start:start + BURST_PACKETS]:
                    self._send(pkt)
                await trio.sleep(BURST_PAUSE)
            pending, self._pending = self._pending or [], None
            last = gop[-1].seq if gop else None
            for pkt in pending:
                if pkt.kind != "video" or last is None or ((pkt.seq - last) & 0xFFFF) < 0x8000:
                    self._send(pkt)
            while not self.closed and not self.source.closed:
                await trio.sleep(1.0)
        finally:
            self.close()


class SdpFeeds:
    """The loopback SDP listener and its feeds (see the module docstring)."""

    def __init__(self, channels: Callable[[], WhipChannels | None], *,
                 host: str = "127.0.0.1") -> None:
        self.channels = channels
        self.host = host
        self.secret = secrets.token_urlsafe(16)
        self.port = 0
        self.feeds: list[Feed] = []
        self._nursery: trio.Nursery | None = None

    @property
    def template(self) -> str:
        """The ``{whip}`` placeholder value (``{name}`` is filled by the placeholder)."""
        return f"http://{self.host}:{self.port}/{self.secret}/{{name}}.sdp"

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        try:
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.serve_listeners, self._serve, listeners)
                task_status.started(self)
        finally:
            self._nursery = None
            for feed in list(self.feeds):
                feed.close()

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            status, body = 400, "bad request\n"
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = b""
                while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_BYTES:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    head += chunk
                status, body = self._answer(head)
            ctype = "application/sdp" if status == 200 else "text/plain"
            data = body.encode()
            with trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    await stream.send_all(
                        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                        f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                        "Connection: close\r\n\r\n".encode() + data)
                except trio.BrokenResourceError:
                    pass

    def _answer(self, head: bytes) -> tuple[int, str]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) < 2 or parts[0] != "GET":
            return 405, "GET only\n"
        path = parts[1].split("?", 1)[0].strip("/").split("/")
        if len(path) != 2 or not secrets.compare_digest(path[0], self.secret) \
                or not path[1].endswith(".sdp"):
            return 404, "not found\n"
        name = unquote(path[1][:-4])
        channels = self.channels()
        channel = None if channels is None else channels.channels.get(name)
        if channel is None or channel.publisher is None or channel.source.closed \
                or not channel.source.tracks:
            return 404, f"nothing is published as {name!r}\n"
        if len(self.feeds) >= MAX_FEEDS or self._nursery is None:
            return 503, "too many readers\n"
        source = channel.source
        try:
            ports = {kind: _free_port_pair(self.host) for kind in ("video", "audio")
                     if kind in source.tracks}
            text = describe(name, source, ports)
            feed = Feed(name, source, ports)
            feed.open()
        except OSError as exc:
            return 503, f"cannot open a feed: {exc}\n"
        self.feeds.append(feed)
        self._nursery.start_soon(self._run_feed, feed)
        log.info("WHIP: feeding %r to a reader on %s", name,
                 ", ".join(f"{k}={p}" for k, p in ports.items()))
        return 200, text

    async def _run_feed(self, feed: Feed) -> None:
        try:
            await feed.run()
        finally:
            if feed in self.feeds:
                self.feeds.remove(feed)
