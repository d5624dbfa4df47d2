"""ICE-TCP, passive (RFC 6544): one listening TCP socket whose connections carry viewers.

A viewer that cannot use UDP (blocked by a firewall) connects to the ``tcptype passive``
host candidate of the answer and sends RFC 4571-framed packets (:mod:`rtp.tcp_framing`).
The **first frame must be a STUN Binding request** whose USERNAME names a viewer's local
ufrag: the connection is then routed to that Peer (looked up exactly like a UDP datagram's
STUN, by :meth:`rtp.mux.UdpMux.peer_for_ufrag`) and, once the request passed the Peer's
integrity check, *bound* to it: every later frame of the connection (STUN, DTLS, SRTCP) goes
to that Peer with the connection as the path to answer on (``via=``). Anything else — a
first frame that is not STUN, an unknown ufrag, a failed check, a frame larger than
:data:`~rtp.tcp_framing.MAX_FRAME`, no valid STUN within ``stun_timeout`` seconds
(slowloris) — closes the connection, counted in :attr:`TcpListener.closed` by reason.
Connections over ``max_connections`` in total or ``max_per_ip`` from one address are
closed at once (counted in :attr:`TcpListener.refused`).

Sending (:meth:`TcpConnection.send`) is synchronous and never blocks: a frame goes straight
to the kernel when nothing is queued, else into the connection's byte-bounded
:class:`~rtp.tcp_framing.SendQueue`, which a writer task drains when the socket is writable;
a frame the queue cannot take is dropped and counted, and the connection's
:class:`~rtp.tcp_framing.KeyframeGate` (which the Peer asks before each media packet)
skips video to the next keyframe. So a slow TCP viewer costs its own queue only and never
stalls the Source's fan-out or other viewers.

Cancellation: :meth:`TcpListener.run` owns the listening socket and a nursery with one task
per connection (reader, writer); cancelling it closes every connection and the socket.
A WHIP publisher (:class:`rtp.publisher.Publisher`) is such a peer too: its SRTP media
frames go to its ``handle_rtp``, as the UDP mux hands it datagrams (for a viewer they are
dropped, ``unexpected-frame``).

A connection closed by its Peer (:meth:`TcpConnection.finish`) first writes what it can of
its queue without waiting (the Peer's goodbye); what the kernel did not take yet is drained
by the writer task for at most :data:`FINISH_LINGER` seconds, then the connection closes
(at once when the listener stops).

**Native writer** (with the C fan-out, :data:`rtp.fanout.STREAMS`): a viewer's C viewer can be
*attached* to its connection (:meth:`TcpConnection.attach`). From then on the C viewer is the
connection's only writer: its worker thread protects, frames and writes the media with
non-blocking ``sendmsg`` (GIL released), queueing in C what the kernel did not take (same
byte limit, same keyframe gate, counted in the same counters); :meth:`send` hands Python's
frames (STUN, DTLS, SRTCP) to the same queue (``viewer.send_frame``), so frames never
interleave. The writer task then waits on an eventfd the worker writes when the C queue
needs the socket's writability, and flushes it (``viewer.flush()``) as the socket drains.
:meth:`detach` (an ICE switch away, the Peer closing, the connection closing) takes back
what is still queued — the Peer's goodbye then follows it on the Python path. The C
viewer never writes the socket after :meth:`detach` returned, so the socket is detached
before it is closed.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .errors import ParseError
from .sockets import is_wildcard
from .stun import peek_username
from .tcp_framing import FrameDecoder, KeyframeGate, SendQueue, encode

__all__ = ["TcpConnection", "TcpLimits", "TcpListener"]

log = logging.getLogger(__name__)

RECV_SIZE = 65536
#: A reader busy with one connection yields to other tasks after this much work (seconds).
YIELD_AFTER = 0.002
#: Seconds a connection closed by its Peer waits at most for the kernel to take the goodbye.
FINISH_LINGER = 1.0


def _frames(data: bytes, head_left: int) -> list[bytes]:
    """``data`` (framed bytes whose first ``head_left`` bytes end a frame already started)
    as one chunk per frame, as :class:`SendQueue` keeps them."""
    out = [data[:head_left]] if head_left else []
    pos = head_left
    while pos < len(data):
        end = pos + 2 + int.from_bytes(data[pos:pos + 2], "big")
        out.append(data[pos:end])
        pos = end
    return out


class TcpPeer(Protocol):
    """What a connection routes frames to (:class:`rtp.peer.Peer` is one)."""

    closed: bool

    def handle_stun(self, data: bytes, addr: tuple[str, int], now: float,
                    via: TcpConnection | None = None) -> bool: ...

    def handle_dtls(self, data: bytes, addr: tuple[str, int], now: float,
                    via: TcpConnection | None = None) -> None: ...

    def handle_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def tcp_closed(self, conn: TcpConnection) -> None: ...


@dataclass(frozen=True)
class TcpLimits:
    """Limits of the ICE-TCP port (0 = no limit for the connection counts)."""

    #: open connections in total
    max_connections: int = 1000
    #: open connections from one IP address (an office NAT puts many viewers behind one)
    max_per_ip: int = 64
    #: seconds a new connection has to deliver a valid STUN Binding request
    stun_timeout: float = 10.0
    #: bytes queued per connection before media is skipped (about 1 s at 4 Mbit/s)
    queue_bytes: int = 512 * 1024


class TcpConnection:
    """One accepted ICE-TCP connection (see the module docstring)."""

    #: a C viewer can write it (:meth:`attach`)
    native_capable = True

    def __init__(self, sock: socket.socket, addr: tuple[str, int], listener: TcpListener
                 ) -> None:
        self.sock = sock
        self.addr = addr
        self.listener = listener
        self.decoder = FrameDecoder()
        self.queue = SendQueue(listener.limits.queue_bytes)
        self.gate = KeyframeGate(listener.limits.queue_bytes // 4)
        self.peer: TcpPeer | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self._writable = trio.Event()
        self._scope: trio.CancelScope | None = None
        self._finishing = False
        self._linger_until = 0.0
        #: the C viewer writing this connection (:meth:`attach`), its eventfd, and its
        #: stream counters already folded into ours
        self._native: Any = None
        self._efd = -1
        self._seen: dict[str, int] = {}

    # -- the native writer ----------------------------------------------------------------

    @property
    def native(self) -> bool:
        """True while a C viewer writes this connection."""
        return self._native is not None

    def attach(self, viewer: Any) -> bool:
        """Make the C ``viewer`` this connection's only writer (see the module docstring):
        what Python still had queued goes first, in the C queue. False when closed."""
        if self.closed:
            return False
        if self._native is viewer:
            return True
        self.detach()
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        chunks = self.queue._chunks
        pending = b"".join(chunks) if self.queue.bytes else b""
        head_left = len(chunks[0]) if pending else 0  # chunk = a frame (or the rest of one)
        try:
            viewer.attach_stream(self.sock.fileno(), efd, self.queue.limit, self.gate.low_water,
                                 pending, head_left)
        except BaseException:
            os.close(efd)
            raise
        self.queue.clear()
        if self.gate.skipping:
            viewer.overflowed()
            self.gate.skipping = False
        self._native, self._efd = viewer, efd
        self._seen = {}
        self._writable.set()  # the writer task switches to the C queue
        return True

    def detach(self, media: bool = True) -> None:
        """The C viewer stops writing; what it still had queued comes back to our queue
        (sent by the writer task, or by :meth:`finish`) — with ``media=False`` (the viewer
        is closing: its goodbye should not wait behind stale media) only the rest of a frame
        already started on the wire. Idempotent."""
        viewer = self._native
        if viewer is None:
            return
        rest, head_left = viewer.detach_stream()
        self._fold()  # its final counts (it writes nothing after detach_stream)
        self._native = None
        self.gate.skipping = bool(viewer.stream_stats()["skipping"])  # counted in C already
        if rest and not self.closed:
            for frame in _frames(rest, head_left) if media else [rest[:head_left]]:
                self.queue.push_tail(frame)
            self._writable.set()
        efd, self._efd = self._efd, -1
        trio.lowlevel.notify_closing(efd)
        os.close(efd)

    def make_room_for_goodbye(self) -> None:
        """The Peer is closing: queued media is stale, its goodbye must not wait behind it
        (or find the queue full). Drops every queued frame but the rest of one already
        started on the wire (the stream stays framed); the C viewer is detached."""
        self.detach(media=False)
        chunks = self.queue._chunks
        if len(chunks) > 1:
            head = chunks[0]
            self.queue.clear()
            self.queue.push_tail(head)

    def _fold(self) -> None:
        """Add the C viewer's stream counters (since the last fold) to ours and the
        listener's."""
        viewer = self._native
        if viewer is None:
            return
        st = viewer.stream_stats()
        seen = self._seen

        def delta(key: str) -> int:
            d = st[key] - seen.get(key, 0)
            seen[key] = st[key]
            return int(d)

        self.frames_out += delta("frames")
        self.bytes_out += delta("bytes_out")
        skipped = delta("skipped")
        self.gate.skipped += skipped
        self.gate.skips += delta("skips")
        self.listener._dropped["skipped-to-keyframe"] += skipped
        self.listener._dropped["queue-full"] += delta("queue_full")
        self.queue.peak = max(self.queue.peak, int(st["peak"]))

    @property
    def queued(self) -> int:
        """Bytes waiting for the kernel (the C queue's while native)."""
        viewer = self._native
        return viewer.stream_stats()["queued"] if viewer is not None else self.queue.bytes

    @property
    def limit(self) -> int:
        """The queue's byte limit."""
        return self.queue.limit

    def fits(self, size: int) -> bool:
        """True if a frame of ``size`` bytes would be queued now."""
        return self.queued + size <= self.queue.limit

    @property
    def skipping(self) -> bool:
        """True while the keyframe gate skips media."""
        viewer = self._native
        return bool(viewer.stream_stats()["skipping"]) if viewer is not None \
            else self.gate.skipping

    def stats(self) -> dict[str, int | bool]:
        """Counters of this connection (the C viewer's folded in)."""
        self._fold()
        return {"frames_out": self.frames_out, "bytes_out": self.bytes_out,
                "queued": self.queued, "peak": self.queue.peak, "skips": self.gate.skips,
                "skipped": self.gate.skipped, "skipping": self.skipping,
                "native": self.native}

    # -- sending (synchronous) ----------------------------------------------------------

    def send(self, packet: bytes) -> bool:
        """Frame and send ``packet`` now, or queue it; False (counted) when it was dropped
        (queue full: the gate then skips media to the next keyframe) or the connection is
        closed."""
        if self.closed:
            return False
        viewer = self._native
        if viewer is not None:
            return bool(viewer.send_frame(packet))  # in order with the C viewer's media
        framed = encode(packet)
        queue = self.queue
        if queue.bytes:
            if not queue.push(framed):
                self.gate.overflowed()
                self.listener._dropped["queue-full"] += 1
                return False
            self.frames_out += 1
            return True
        try:
            sent = self.sock.send(framed)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail("send-error")
            return False
        self.frames_out += 1
        self.bytes_out += sent
        if sent < len(framed):
            queue.push_tail(framed[sent:])
            self._writable.set()
        return True

    def sendto(self, packet: bytes, addr: tuple[str, int] | None = None) -> None:
        """:attr:`rtp.peer.OutTrack.sendto`-compatible: ``addr`` is ignored (the connection
        has one peer); raises BlockingIOError when the packet was dropped."""
        if not self.send(packet):
            raise BlockingIOError(errno.EAGAIN, "ICE-TCP send queue full")

    def admit(self, video: bool, keyframe: bool) -> bool:
        """Whether a media packet may go out now (the :class:`KeyframeGate`); a packet
        skipped is counted in the listener's ``dropped["skipped-to-keyframe"]``."""
        viewer = self._native
        if viewer is not None:
            return bool(viewer.admit(video, keyframe))  # the C gate (counted there)
        if self.gate.admit(video, keyframe, self.queue.bytes):
            return True
        self.listener._dropped["skipped-to-keyframe"] += 1
        return False

    def overflowed(self) -> None:
        """Skip video to the next keyframe (a burst given up)."""
        viewer = self._native
        if viewer is not None:
            viewer.overflowed()
        else:
            self.gate.overflowed()

    # -- lifecycle ----------------------------------------------------------------------

    def finish(self) -> None:
        """Close once the queue (the Peer's goodbye) is written: at once when the kernel
        takes it, else when the writer task has drained it, within :data:`FINISH_LINGER`
        seconds at most (then closed anyway). Idempotent."""
        if self.closed or self._finishing:
            return
        self._finishing = True
        self.detach(media=False)
        self._flush_now()
        if not self.queue.bytes or self._scope is None:
            self.close("peer closed")
            return
        self._linger_until = trio.current_time() + FINISH_LINGER
        self._writable.set()

    def close(self, reason: str) -> None:
        """Close now (idempotent); the Peer is told, the counters note ``reason``."""
        if self.closed:
            return
        self.detach()  # before the socket closes: the C viewer never writes it again
        self.closed = True
        self.close_reason = reason
        self.listener.closed[reason] += 1
        self.queue.clear()
        if self._scope is not None:
            self._scope.cancel()
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.tcp_closed(self)

    def _fail(self, reason: str) -> None:
        self.close(reason)

    def _flush_now(self) -> None:
        queue = self.queue
        while queue.bytes:
            data = queue.chunk()
            try:
                sent = self.sock.send(data)
            except OSError:
                return
            self.bytes_out += sent
            queue.consume(sent)
            if sent < len(data):
                return

    # -- tasks --------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, route and write until the connection closes (or is cancelled)."""
        try:
            with trio.CancelScope() as self._scope:
                if self.closed:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._stun_deadline)
                    await self._reader()
                    nursery.cancel_scope.cancel()
        finally:
            self.close(self.close_reason or "cancelled")
            self.listener._forget(self)

    async def _stun_deadline(self) -> None:
        await trio.sleep(self.listener.limits.stun_timeout)
        if self.peer is None:
            self.close("stun-timeout")

    async def _writer(self) -> None:
        queue = self.queue
        sock = self.sock
        while True:
            viewer = self._native
            if viewer is not None:
                await self._native_writer(viewer)
                continue
            await self._writable.wait()
            self._writable = trio.Event()
            while queue.bytes and self._native is None:
                if self._finishing:
                    with trio.move_on_at(self._linger_until):
                        await trio.lowlevel.wait_writable(sock)
                    if trio.current_time() >= self._linger_until:
                        break
                else:
                    await trio.lowlevel.wait_writable(sock)
                data = queue.chunk()
                if not data:
                    break
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    continue
                except OSError:
                    self.close("send-error")
                    return
                self.bytes_out += sent
                queue.consume(sent)
            if self._finishing:
                self.close("peer closed")  # the goodbye is out (or its time is up)
                return

    async def _native_writer(self, viewer: Any) -> None:
        """While ``viewer`` writes the connection: wait until its worker says the C queue
        needs writability (eventfd), then flush it as the socket drains. Returns when the
        viewer was detached (its eventfd is closed then)."""
        efd = self._efd
        try:
            await trio.lowlevel.wait_readable(efd)
        except trio.ClosedResourceError:
            return  # detached
        if self._native is not viewer or self._efd != efd:
            return  # detached (and the eventfd closed) after it woke us
        try:
            os.eventfd_read(efd)
        except BlockingIOError:
            pass
        while self._native is viewer:
            left = viewer.flush()
            if left < 0:
                if self._native is viewer:
                    self.close("send-error")
                return
            if left == 0:
                return
            await trio.lowlevel.wait_writable(self.sock)

    async def _reader(self) -> None:
        sock = self.sock
        clock = time.perf_counter
        while not self.closed:
            await trio.lowlevel.wait_readable(sock)
            yield_at = clock() + YIELD_AFTER
            while not self.closed:
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    self.close("recv-error")
                    return
                if not data:
                    self.close("eof")
                    return
                try:
                    frames = self.decoder.feed(data)
                except ParseError as exc:
                    self.close(exc.reason)
                    return
                now = trio.current_time()
                for frame in frames:
                    self._dispatch(frame, now)
                    if self.closed:
                        return
                if clock() > yield_at:
                    await trio.lowlevel.checkpoint()
                    yield_at = clock() + YIELD_AFTER

    def _dispatch(self, frame: bytes, now: float) -> None:
        self.frames_in += 1
        first = frame[0]
        peer = self.peer
        try:
            if peer is None:
                self._first_stun(frame, now)
            elif first < 4:
                peer.handle_stun(frame, self.addr, now, via=self)
            elif 20 <= first <= 63:
                peer.handle_dtls(frame, self.addr, now, via=self)
            elif 128 <= first <= 191 and len(frame) >= 2 and 192 <= frame[1] <= 223:
                peer.handle_rtcp(frame, self.addr, now)
            elif 128 <= first <= 191 and (rtp := getattr(peer, "handle_rtp", None)):
                rtp(frame, self.addr, now)  # SRTP media of a WHIP publisher
            else:
                self.listener._dropped["unexpected-frame"] += 1
        except ParseError as exc:
            self.listener._dropped[exc.reason] += 1
        except Exception:  # a bug costs this connection, never the listener
            log.exception("ICE-TCP: closing the connection from %s after an error", self.addr)
            self.close("internal-error")

    def _first_stun(self, frame: bytes, now: float) -> None:
        """Before binding: only a STUN Binding request naming a known viewer is accepted."""
        if frame[0] >= 4:
            self.close("not-stun")
            return
        try:
            username = peek_username(frame)
        except ParseError:
            self.close("not-stun")
            return
        if username is None:
            self.close("not-stun")
            return
        peer = self.listener.lookup(username.split(":", 1)[0])
        if peer is None or peer.closed:
            self.close("unknown-ufrag")
            return
        if peer.handle_stun(frame, self.addr, now, via=self):
            self.peer = peer
            self.listener.bound += 1
        else:
            self.close("stun-rejected")


class TcpListener:
    """The ICE-TCP port. ``await nursery.start(listener.run)`` returns the bound port.

    Args:
        host: address to bind (``""``/``0.0.0.0``/``::`` for all interfaces).
        port: TCP port (0 = ephemeral).
        lookup: finds the Peer owning a local ufrag (the UDP mux's username demux).
        limits: connection limits and the per-connection queue size.
        before_close: called first when the listener ends (see :attr:`before_close`).
    """

    def __init__(self, host: str, port: int, lookup: Callable[[str], TcpPeer | None],
                 limits: TcpLimits | None = None,
                 before_close: Callable[[], None] | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.lookup = lookup
        self.limits = limits or TcpLimits()
        #: called when the listener ends, before its connections close (the forwarder closes
        #: its Peers there, so goodbyes still go out over their connections)
        self.before_close = before_close
        self.connections: set[TcpConnection] = set()
        self._per_ip: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self.bound = 0
        #: connections refused at accept by reason (``limit-total``, ``limit-per-ip``)
        self.refused: collections.Counter[str] = collections.Counter()
        #: connections closed by reason (``stun-timeout``, ``not-stun``, ``eof``, …)
        self.closed: collections.Counter[str] = collections.Counter()
        self._dropped: collections.Counter[str] = collections.Counter()
        self._sock: socket.socket | None = None

    def _bind(self) -> socket.socket:
        host = self.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if is_wildcard(self.host) and ":" not in host:
            host = "0.0.0.0"
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not is_wildcard(self.host):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, self.requested_port))
            sock.listen(512)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the port, accept until cancelled (then close every connection).

        Cancellation: the connections run in a shielded inner scope, so when the listener
        is cancelled :attr:`before_close` (the forwarder closes its Peers: each queues its
        goodbye on its still-open connection) runs first, then every connection is closed
        and that scope cancelled; ``run`` returns when all of them have ended."""
        sock = self._bind()
        self._sock = sock
        conn_scope = trio.CancelScope(shield=True)

        async def serve_connections(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
            with conn_scope:
                async with trio.open_nursery() as conns:
                    task_status.started(conns)
                    await trio.sleep_forever()

        try:
            self.port = sock.getsockname()[1]
            async with trio.open_nursery() as nursery:
                conns: trio.Nursery = await nursery.start(serve_connections)
                task_status.started(self.port)
                try:
                    await self._accept(sock, conns)
                finally:
                    self._close_connections()
                    conn_scope.cancel()
        finally:
            self._close_connections()
            for conn in list(self.connections):
                self._forget(conn)
            self._sock = None
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _accept(self, sock: socket.socket, conns: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            while True:
                try:
                    conn_sock, addr = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # EMFILE and friends: back off a little
                    self.refused["accept-error"] += 1
                    log.warning("ICE-TCP: accept failed: %s", exc)
                    await trio.sleep(0.1)
                    break
                conn = self._admit(conn_sock, (addr[0], addr[1]))
                if conn is not None:
                    conns.start_soon(conn.run)
            await trio.lowlevel.checkpoint()

    def _close_connections(self) -> None:
        """The Peers first (their goodbyes go out on their connections), then every
        connection. Idempotent."""
        if self.before_close is not None:
            self.before_close()
        for conn in list(self.connections):
            conn.close("listener closed")

    def _admit(self, conn_sock: socket.socket, addr: tuple[str, int]) -> TcpConnection | None:
        limits = self.limits
        reason = None
        if limits.max_connections and len(self.connections) >= limits.max_connections:
            reason = "limit-total"
        elif limits.max_per_ip and self._per_ip[addr[0]] >= limits.max_per_ip:
            reason = "limit-per-ip"
        if reason is not None:
            self.refused[reason] += 1
            conn_sock.close()
            return None
        conn_sock.setblocking(False)
        try:
            conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.accepted += 1
        conn = TcpConnection(conn_sock, addr, self)
        self.connections.add(conn)
        self._per_ip[addr[0]] += 1
        return conn

    def _forget(self, conn: TcpConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._per_ip[conn.addr[0]] -= 1
            if self._per_ip[conn.addr[0]] <= 0:
                del self._per_ip[conn.addr[0]]
            trio.lowlevel.notify_closing(conn.sock)
            conn.sock.close()

    @property
    def dropped(self) -> collections.Counter[str]:
        """Frames not delivered by reason (``queue-full``, ``skipped-to-keyframe``,
        STUN/parse reasons), the native writers' counts included."""
        for conn in self.connections:
            conn._fold()
        return self._dropped

    def stats(self) -> dict[str, object]:
        """Counters for the metrics (JSON-ready)."""
        return {"open": len(self.connections), "accepted": self.accepted, "bound": self.bound,
                "refused": dict(self.refused), "closed": dict(self.closed),
                "dropped": dict(self.dropped)}
