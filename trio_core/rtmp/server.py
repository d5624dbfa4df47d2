"""The RTMP/RTMPS server: listeners, one task pair per connection, publish/play by path.

``await nursery.start(server.run)`` binds the listeners (``host``/``port``, and the RTMPS
pair when an ``ssl_context`` is given), reports the server through ``task_status`` (``ports``
and ``tls_ports`` are then the bound ports) and serves until cancelled; cancellation closes
every listener and connection, and nothing it started outlives it.

Per connection: a reader task feeds :class:`rtmp.connection.ServerConnection` and acts on its
events, and a writer task drains the connection's :class:`~trio_core.rtmp.registry.Player`
queue (also used for control replies), so a publisher never waits for a player.

**The native sender pool** (issue 23): with the C extension (``rtp.sender_pool.SINKS``) and
``native=True``, ``run`` holds the process's shared pool (``sender_workers`` threads if it
makes it; the WebRTC forwarder shares it) for as long as it serves, and every plain-RTMP
connection is written by a C *sink* on one of its workers: its control replies, its join
burst and, once started, the channel's live messages (one ``group.send`` per message). The
connection's writer task then only waits: for the pool's hub (one eventfd per server, read
by one task that wakes the writer of each sink that reported something) and, while the
sink's C queue holds bytes, for the socket's writability (``sink.poll()`` flushes); it ends
the connection when the sink reports a drop (the relay policy, in C), a failed socket or the
end of the stream. On the way out the sink is closed before the socket (the pool never
writes an fd after that), then a graceful end lingers for the peer's close (``LINGER`` s);
when ``run`` ends every connection has ended, the hub's eventfd is closed and the pool is
released (the last holder joins its threads). RTMPS connections and every connection without
the extension (or with ``RTP_FANOUT=python``) keep the Python path, with the same bytes. Rules as
datarhei Core (``rtmp/rtmp.go``): the token (``rtmp.token``) is required for publish and
play, as ``?token=`` or as the last path element; a publish path must start with
``rtmp.app``; one publisher per path (a second one gets ``NetStream.Publish.BadName`` and is
disconnected, the first is untouched); playing an unknown path gets
``NetStream.Play.StreamNotFound``. Refusals are logged and the connection is closed.

Hostile or broken peers (bad handshake, malformed chunks, bogus AMF, limits exceeded,
nothing received for ``idle_timeout`` seconds unless playing, no accepted publish/play within
``setup_timeout`` seconds, a player whose socket accepts nothing for ``idle_timeout`` seconds)
are disconnected with one log line; other connections are unaffected. ``setup_timeout`` is
a hard deadline from accept to an accepted publish or play (handshake included): a client
that trickles bytes (one per second) is dropped at it. ``max_connections`` bounds concurrent
connections, ``max_connections_per_address`` those of one client IP address (0 = no bound;
the addresses in ``unlimited_addresses`` — the server's own FFmpeg processes connect from
loopback — are not bounded); more are accepted and closed at once.
"""

from __future__ import annotations

import hmac
import logging
import posixpath
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from relay import RelayCounters, RelayStats
from rtmp.connection import (
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    ServerConnection,
    StreamDeleted,
)
from rtmp.errors import RtmpError
from trio_core.rtmp.paths import StreamRequest, resolve_request
from trio_core.rtmp.registry import (
    DEFAULT_MAX_GOP_BYTES,
    SINK_DROPPED,
    SINK_FAILED,
    SINK_FINISHED,
    Channel,
    Player,
    StreamRegistry,
)

__all__ = ["RtmpServer"]

log = logging.getLogger(__name__)

RECEIVE_SIZE = 65536
#: seconds a connection that ends gracefully waits for the peer's close after our last byte
LINGER = 2.0


class SessionSink(Protocol):
    """What the server needs of a session collector (``trio_core.observability``'s ``rtmp``
    collector): synchronous, no I/O."""

    def collectable(self, ip: str) -> bool: ...

    def register_and_activate(self, session_id: str, reference: str = "", location: str = "",
                              peer: str = "", *, expires: bool = False) -> None: ...

    def ingress(self, session_id: str, size: int) -> None: ...

    def egress(self, session_id: str, size: int) -> None: ...

    def unregister(self, session_id: str) -> None: ...


@dataclass
class _Conn:
    remote: str
    conn: ServerConnection
    out: Player
    publishing: dict[int, Channel] = field(default_factory=dict)
    playing: Channel | None = None
    sessions: SessionSink | None = None  # set while the connection is an accounted session
    session_id: str = ""

    def ingress(self, size: int) -> None:
        if self.sessions is not None:
            self.sessions.ingress(self.session_id, size)

    def egress(self, size: int) -> None:
        if self.sessions is not None:
            self.sessions.egress(self.session_id, size)


class RtmpServer:
    """An RTMP server (see the module docstring)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 1935, app: str = "/", token: str = "",
        tls_host: str = "127.0.0.1", tls_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None, idle_timeout: float = 10.0,
        setup_timeout: float = 30.0, max_connections_per_address: int = 0,
        unlimited_addresses: frozenset[str] = frozenset(),
        max_connections: int = 1000, max_queue_bytes: int = 8 * 1024 * 1024, max_skips: int = 3,
        chunk_size: int = 4096, max_message_size: int = 8 * 1024 * 1024,
        max_gop_bytes: int = DEFAULT_MAX_GOP_BYTES, sender_workers: int | None = None,
        native: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.app = app or "/"
        self.token = token
        self.tls_host = tls_host
        self.tls_port = tls_port
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.setup_timeout = setup_timeout
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self.unlimited_addresses = unlimited_addresses
        self._per_address: dict[str, int] = {}  # open connections by client IP address
        self._flooding: set[str] = set()  # addresses refused since they reached the limit
        self.max_queue_bytes = max_queue_bytes
        self.max_skips = max_skips
        self.chunk_size = chunk_size
        self.max_message_size = max_message_size
        self.registry = StreamRegistry(chunk_size, max_gop_bytes=max_gop_bytes)
        #: skips and drops of every player queue (``relay_*`` metrics)
        self.relay_counters = RelayCounters()
        self.ports: list[int] = []
        self.tls_ports: list[int] = []
        self.connections = 0
        self.refused_connections = 0
        #: returns the session collector to account publishers and players in (or None);
        #: asked once per accepted publish/play, so it may appear after the server started
        self.sessions: Callable[[], SessionSink | None] = lambda: None
        #: plain-RTMP players are written by the native sender pool when it is available
        #: (``native``; the pool is shared with the WebRTC fan-out: ``sender_workers``
        #: threads if this server makes it, see :mod:`rtp.sender_pool`)
        self.native = native
        self.sender_workers = sender_workers
        self.engine: Any = None  # the pool while run() holds it
        self._hub: Any = None
        self._sinks: dict[int, Player] = {}  # by token
        self._next_token = 0

    def channels(self) -> list[str]:
        """Paths currently being published (what ``GET /api/v3/rtmp`` lists)."""
        return self.registry.names()

    def stats(self) -> dict[str, Any]:
        """Counters for metrics/session accounting (JSON-ready): connections, and per published
        path its publisher, bytes in, codecs and each player's bytes sent and skips."""
        return {
            "connections": self.connections,
            "refused_connections": self.refused_connections,
            "channels": [
                {
                    "name": ch.path, "publisher": ch.remote, "since": round(ch.created_at, 3),
                    "bytes_in": ch.bytes_in, "messages_in": ch.messages_in,
                    "video_codec": ch.video_codec, "audio_codec": ch.audio_codec,
                    "players": [{"remote": p.remote, "since": round(p.since, 3),
                                 "bytes_sent": p.bytes_sent, "skips": p.skips}
                                for p in ch.players],
                }
                for ch in self.registry.channels.values()
            ],
        }

    def relay_stats(self) -> RelayStats:
        """The relay's state for the ``relay_*`` metrics (``server="rtmp"``)."""
        readers = queued = 0
        for player in self.registry.players():
            readers += 1
            queued += player.queued_total
        return RelayStats(readers=readers, queued_bytes=queued,
                          skips=self.relay_counters.skips, drops=self.relay_counters.drops,
                          gop_bytes=sum(ch.gop_bytes for ch in self.registry.channels.values()))

    async def run(self, *, task_status: trio.TaskStatus[RtmpServer] = trio.TASK_STATUS_IGNORED) -> None:
        listeners: list[trio.SocketListener] = []
        engine = None
        if self.native:
            from rtp import sender_pool

            if sender_pool.SINKS:
                engine = sender_pool.acquire(self.sender_workers)
        try:
            if engine is not None:
                self._hub = engine.hub()
                self.engine = self.registry.engine = engine
            plain = await trio.open_tcp_listeners(self.port, host=self.host or None)
            listeners += plain
            self.ports = [lst.socket.getsockname()[1] for lst in plain]
            tls: list[trio.SocketListener] = []
            if self.ssl_context is not None and self.tls_port is not None:
                tls = await trio.open_tcp_listeners(self.tls_port, host=self.tls_host or None)
                listeners += tls
                self.tls_ports = [lst.socket.getsockname()[1] for lst in tls]
            async with trio.open_nursery() as nursery:
                if self._hub is not None:
                    nursery.start_soon(self._hub_loop, self._hub)
                for lst in plain:
                    nursery.start_soon(self._accept_loop, lst, False, nursery)
                for lst in tls:
                    nursery.start_soon(self._accept_loop, lst, True, nursery)
                task_status.started(self)
        finally:
            # every connection ended (its sink closed before its socket): the pool goes
            self.engine = self.registry.engine = None
            hub, self._hub = self._hub, None
            if hub is not None:
                trio.lowlevel.notify_closing(hub.fileno())
                hub.close()
            if engine is not None:
                from rtp import sender_pool

                sender_pool.release(engine)
            with trio.CancelScope(shield=True):  # close every listener, even when cancelled
                for lst in listeners:
                    await lst.aclose()

    async def _hub_loop(self, hub: Any) -> None:
        """Wake the writer of each native player whose sink needs attention (its queue
        turned non-empty, a skip, a drop, a failed socket, the end of its stream), and
        report the sinks' bytes to the session collector about once a second."""
        fd = hub.fileno()
        account_at = trio.current_time() + 1.0
        while True:
            with trio.move_on_at(account_at):
                await trio.lowlevel.wait_readable(fd)
            for token in hub.take():
                player = self._sinks.get(token)
                if player is not None:
                    player.native_event()
            if trio.current_time() >= account_at:
                account_at = trio.current_time() + 1.0
                for player in self._sinks.values():
                    player.account_native()

    async def _accept_loop(self, listener: trio.SocketListener, tls: bool,
                           nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off instead of spinning
                log.warning("RTMP: accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            if self.connections >= self.max_connections:
                self.refused_connections += 1
                log.warning("RTMP: connection limit (%d) reached; refusing %s",
                            self.max_connections, _peer(stream))
                await stream.aclose()
                continue
            host = _peer_host(stream)
            held = self._per_address.get(host, 0)
            if (self.max_connections_per_address and held >= self.max_connections_per_address
                    and host not in self.unlimited_addresses):
                self.refused_connections += 1
                if host not in self._flooding:  # one line per flood, not per connection
                    self._flooding.add(host)
                    log.warning("RTMP: %s holds %d connections (the limit per address); "
                                "refusing more", host, held)
                await stream.aclose()
                continue
            self._per_address[host] = held + 1
            self.connections += 1
            nursery.start_soon(self._connection, stream, tls)

    def _release(self, host: str) -> None:
        held = self._per_address.get(host, 0) - 1
        if held > 0:
            self._per_address[host] = held
        else:
            self._per_address.pop(host, None)
        if held < self.max_connections_per_address:
            self._flooding.discard(host)

    async def _connection(self, sock_stream: trio.SocketStream, tls: bool) -> None:
        remote = _peer(sock_stream)
        host = _peer_host(sock_stream)
        stream: trio.abc.Stream = sock_stream
        if tls:
            assert self.ssl_context is not None
            stream = trio.SSLStream(sock_stream, self.ssl_context, server_side=True)
        conn = ServerConnection(chunk_size=self.chunk_size, max_message_size=self.max_message_size)
        out = Player("", 0, self.chunk_size, max_queue_bytes=self.max_queue_bytes,
                     max_skips=self.max_skips, remote=remote, counters=self.relay_counters)
        state = _Conn(remote, conn, out)
        writer = self._writer
        token = -1
        if not tls and self.engine is not None and self._hub is not None:
            # the native sender pool writes this connection (its worker, GIL released)
            token = self._next_token = self._next_token + 1
            out.sink = self.engine.sink(self._hub, token, sock_stream.socket.fileno(),
                                        self.max_queue_bytes, self.max_skips)
            out.on_sent = state.egress
            self._sinks[token] = out
            writer = self._native_writer
        elif not tls:  # players that keep up get their messages by direct writev (Player._kick)
            out.fd = sock_stream.socket.fileno()
            out.on_sent = state.egress
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, state, writer, stream, nursery.cancel_scope)
                await self._guarded(state, self._reader, stream)
                out.close()  # let the writer flush what is queued, then end
        finally:
            out.fd = None  # before the socket closes: no direct send to a reused fd number
            if out.sink is not None:  # nor a write by the pool: it never writes after this
                out.sink.close()
                out.account_native()
                self._sinks.pop(token, None)
            self.connections -= 1
            self._release(host)
            self._cleanup(state)
            # a graceful end (not the server stopping): FIN after the last byte, then wait
            # (<= LINGER s) for the peer's close, reading what it still sends — closing with
            # unread bytes makes the kernel reset the connection and throw away what the
            # peer has not received yet (the end of a player's stream)
            graceful = not tls and trio.current_effective_deadline() != float("-inf")
            with trio.CancelScope(shield=True) as cs:
                cs.deadline = trio.current_time() + LINGER
                try:
                    if graceful:
                        await _linger(sock_stream.socket)
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _guarded(self, state: _Conn, fn: Any, *args: Any) -> None:
        """Run the reader or the writer; the errors a peer can cause end with a log line."""
        remote = state.remote
        try:
            await fn(state, *args)
        except RtmpError as exc:
            log.warning("RTMP: dropped connection from %s: %s", remote, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("RTMP: connection from %s broken: %s", remote, exc.__cause__ or exc)
        except trio.TooSlowError:
            log.warning("RTMP: dropped connection from %s: it accepted nothing for %.0f s",
                        remote, self.idle_timeout)
        except Exception:  # a bug must not take the server down with it
            log.exception("RTMP: connection from %s failed", remote)
        finally:
            state.out.close()

    def _start_session(self, state: _Conn, session_id: str, path: str, action: str) -> None:
        """Account the connection as a session (Core's ``rtmp.go``: a publisher is the session
        ``path``, a player ``ip:port``; reference = the path without app and extension)."""
        sessions = self.sessions()
        host = state.remote.rpartition(":")[0].strip("[]")
        if sessions is None or not sessions.collectable(host):
            return
        reference = posixpath.splitext(path)[0]
        prefix = self.app.rstrip("/") + "/"
        if reference.startswith(prefix):
            reference = reference[len(prefix):]
        sessions.register_and_activate(session_id, reference, f"{action}:{path}", state.remote)
        state.sessions, state.session_id = sessions, session_id

    def _cleanup(self, state: _Conn) -> None:
        if state.sessions is not None:
            state.sessions.unregister(state.session_id)
            state.sessions = None
        for channel in state.publishing.values():
            self._unpublish(state, channel)
        state.publishing.clear()
        if state.playing is not None:
            state.playing.remove_player(state.out)
            state.playing = None

    def _unpublish(self, state: _Conn, channel: Channel) -> None:
        self.registry.unpublish(channel)
        log.info("RTMP: PUBLISH STOP %s from %s (%d bytes in)", channel.path, state.remote,
                 channel.bytes_in)

        def notify(player: Player) -> None:
            pconn: ServerConnection | None = player.conn
            if pconn is not None:
                pconn.end_play(player.stream_id, player.name)
                player.push_control(pconn.data_to_send())

        channel.close(notify)

    async def _writer(self, state: _Conn, stream: trio.abc.Stream,
                      cancel_scope: trio.CancelScope) -> None:
        out = state.out
        try:
            while True:
                await out.wait()
                if out.dropped:
                    break
                data = out.take()
                if data:
                    out.busy = True  # no direct send overtakes these bytes
                    with trio.CancelScope() as out.send_scope, trio.fail_after(self.idle_timeout):
                        await stream.send_all(data)
                    out.send_scope = None
                    out.busy = False
                    state.egress(len(data))
                    if out.dropped:
                        break
                if out.closed and not out.has_data:
                    break
        finally:
            cancel_scope.cancel()

    async def _native_writer(self, state: _Conn, stream: trio.abc.Stream,
                             cancel_scope: trio.CancelScope) -> None:
        """The writer of a connection the sender pool writes: flushes the sink's queue when
        the socket is writable again (the hub says when it is non-empty), ends the
        connection when the player was dropped, its socket failed, or its stream finished
        (the publisher left, everything was written)."""
        out = state.out
        sock = stream.socket  # type: ignore[attr-defined]
        try:
            while True:
                queued, flags = out.poll_native()
                if flags & (SINK_DROPPED | SINK_FAILED):
                    break
                if queued:
                    with trio.CancelScope() as out.send_scope, trio.fail_after(self.idle_timeout):
                        await trio.lowlevel.wait_writable(sock)
                    out.send_scope = None
                    continue
                if flags & SINK_FINISHED:
                    break
                await out.wait_native()
        finally:
            out.send_scope = None
            cancel_scope.cancel()

    async def _reader(self, state: _Conn, stream: trio.abc.Stream) -> None:
        conn = state.conn
        setup_deadline = trio.current_time() + self.setup_timeout
        while True:
            setting_up = state.playing is None and not state.publishing
            if setting_up and trio.current_time() >= setup_deadline:
                log.warning("RTMP: dropped connection from %s: no publish or play within %.0f s",
                            state.remote, self.setup_timeout)
                return
            timeout = float("inf") if state.playing is not None else self.idle_timeout
            deadline = trio.current_time() + timeout
            if setting_up:  # the setup deadline holds even for a client trickling bytes
                deadline = min(deadline, setup_deadline)
            with trio.move_on_at(deadline) as idle:
                data = await stream.receive_some(RECEIVE_SIZE)
            if idle.cancelled_caught and setting_up and trio.current_time() >= setup_deadline:
                continue  # reported at the top of the loop
            if idle.cancelled_caught:
                where = "during the handshake" if not conn.handshake_done else "while idle"
                log.warning("RTMP: dropped connection from %s: nothing received for %.0f s %s",
                            state.remote, self.idle_timeout, where)
                return
            if not data:
                return
            state.ingress(len(data))
            events = conn.receive_data(data)
            keep_going = True
            for event in events:
                if isinstance(event, MediaReceived):
                    channel = state.publishing.get(event.stream_id)
                    if channel is not None:
                        channel.on_media(event.type_id, event.timestamp, event.payload)
                elif not self._on_event(state, event):
                    keep_going = False
                    break
            state.out.push_control(conn.data_to_send())
            if not keep_going:
                return

    def _authorise(self, state: _Conn, action: str, name: str) -> StreamRequest | str:
        """The stream request, or the reason it is refused."""
        req = resolve_request(state.conn.app, name, token_required=bool(self.token))
        if self.token:
            if not req.token:
                log.warning("RTMP: %s FORBIDDEN %s from %s: no streamkey provided",
                            action, req.path, state.remote)
                return "no streamkey provided"
            if not hmac.compare_digest(req.token.encode(), self.token.encode()):
                log.warning("RTMP: %s FORBIDDEN %s from %s: invalid streamkey",
                            action, req.path, state.remote)
                return "invalid streamkey"
        return req

    def _on_event(self, state: _Conn, event: Any) -> bool:
        """Handle a non-media event; False ends the connection (after flushing replies)."""
        conn = state.conn
        if isinstance(event, PublishRequested):
            req = self._authorise(state, "PUBLISH", event.name)
            if isinstance(req, str):
                conn.reject(event.stream_id, "NetStream.Publish.Rejected", f"Forbidden: {req}")
                return False
            if not req.path.startswith(self.app):
                log.warning("RTMP: PUBLISH FORBIDDEN %s from %s: invalid app",
                            req.url_path, state.remote)
                conn.reject(event.stream_id, "NetStream.Publish.Rejected", "Forbidden: invalid app")
                return False
            if state.playing is not None or state.publishing:
                conn.reject(event.stream_id, "NetStream.Publish.Rejected",
                            "one publish or play per connection")
                return False
            channel = self.registry.publish(req.path, state.remote)
            if channel is None:
                log.warning("RTMP: PUBLISH CONFLICT %s from %s: already publishing",
                            req.path, state.remote)
                conn.reject(event.stream_id, "NetStream.Publish.BadName",
                            f"{req.path} is already being published")
                return False
            state.publishing[event.stream_id] = channel
            self._start_session(state, req.path, req.path, "publish")
            conn.accept_publish(event.stream_id, event.name.partition("?")[0])
            log.info("RTMP: PUBLISH START %s from %s", req.path, state.remote)
            return True
        if isinstance(event, PlayRequested):
            req = self._authorise(state, "PLAY", event.name)
            if isinstance(req, str):
                conn.reject(event.stream_id, "NetStream.Play.Failed", f"Forbidden: {req}")
                return False
            if state.playing is not None or state.publishing:
                conn.reject(event.stream_id, "NetStream.Play.Failed",
                            "one publish or play per connection")
                return False
            channel = self.registry.get(req.path)
            if channel is None:
                log.warning("RTMP: PLAY NOTFOUND %s from %s", req.path, state.remote)
                conn.reject(event.stream_id, "NetStream.Play.StreamNotFound",
                            f"{req.path} is not being published")
                return False
            name = event.name.partition("?")[0]
            conn.accept_play(event.stream_id, name, channel.metadata)
            out = state.out
            out.push_control(conn.data_to_send())
            out.name, out.stream_id = name, event.stream_id
            out.conn = conn  # for end_play when the publisher leaves
            state.playing = channel
            self._start_session(state, state.remote, req.path, "play")
            channel.add_player(out)
            log.info("RTMP: PLAY START %s from %s", req.path, state.remote)
            return True
        if isinstance(event, MetadataReceived):
            channel = state.publishing.get(event.stream_id)
            if channel is not None:
                channel.set_metadata(event.payload, event.values)
            return True
        if isinstance(event, StreamDeleted):
            channel = state.publishing.pop(event.stream_id, None)
            if channel is not None:
                self._unpublish(state, channel)
            elif state.playing is not None and event.stream_id == state.out.stream_id:
                state.playing.remove_player(state.out)
                state.playing = None
            return True
        return True  # ConnectRequested and the like: already answered


async def _linger(sock: trio.socket.SocketType) -> None:
    """Shut our side down and read (discarding) until the peer closes; the caller bounds
    the time."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while await sock.recv(65536):
            pass
    except OSError:
        pass


def _peer_host(stream: trio.SocketStream) -> str:
    """The client's IP address ("?" when unknown)."""
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


def _peer(stream: trio.SocketStream) -> str:
    try:
        addr = stream.socket.getpeername()
    except OSError:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

