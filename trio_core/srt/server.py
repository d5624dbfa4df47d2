"""The SRT server: libsrt listener + relay, run by one I/O thread owned by a trio task.

``await nursery.start(server.run)`` creates the libsrt listener on ``address`` (``host:port``,
empty host = all IPv4 interfaces, port 0 = ephemeral), reports the bound port and serves
until cancelled. Behaviour (datarhei Core ``srt/srt.go``):

* The stream id decides (:mod:`.streamid`): ``publish`` or ``request`` a resource; with
  ``token`` set the stream id must carry it; with ``passphrase`` set the connection must be
  encrypted with it (libsrt enforces it during the handshake), without it encrypted callers
  are refused. Admission is checked in libsrt's listen callback, so a refused caller sees
  a handshake rejection (reason 1400/1403/1404/1409/1429, SRT's predefined HTTP-like codes);
  the check is repeated when the connection is accepted (a race loser is closed at once).
  Besides Core's rules, one client address may hold at most ``hub.max_per_address``
  connections (LIMIT, "too many connections from this address").
* One publisher per resource, many subscribers; each publisher payload (one mpegts
  message of up to 1456 bytes) goes to every subscriber with a non-blocking ``srt_sendmsg``.
  A subscriber that does not keep up — more than ``hub.max_backlog_ms`` of unacknowledged
  stream in its libsrt send buffer (checked every ``CHECK_INTERVAL``), or its own bounded
  queue of payloads libsrt refused overflowing (:mod:`.hub`) — is dropped. The publisher
  never waits.
* When a publisher leaves, its subscribers are closed (they reconnect, as FFmpeg processes do
  with ``reconnect``). Garbage datagrams are libsrt's business: it drops them.

Threads and cancellation: every blocking libsrt call (``srt_epoll_uwait`` with a 100 ms
timeout, accept/recv/send in non-blocking mode) runs in one thread started by ``run`` through
``trio.to_thread.run_sync``. When ``run`` is cancelled a sibling task sets the thread's stop
flag; the thread closes every socket and the listener and returns within ~100 ms, and only
then does ``run`` return, after ``srt_cleanup`` (paired with the ``srt_startup`` at its
start), so libsrt's own threads are gone too unless another user holds libsrt — no thread
or socket outlives it. Events (connects, rejections,
drops) flow from the threads to trio over a bounded memory channel (via the run's
``TrioToken``; an event that does not fit is counted in ``events_lost``) and land in the log
and in :attr:`SrtServer.events`. :meth:`SrtServer.channels` is safe to call from trio.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from relay import RelayStats
from trio_core.srt import liblog
from trio_core.srt.binding import (
    DEFAULT_RCVBUF_PACKETS,
    MAX_PAYLOAD,
    SRT_EPOLL_ERR,
    SRT_EPOLL_IN,
    SRT_EPOLL_OUT,
    SRT_REJX_BAD_REQUEST,
    SRT_REJX_CONFLICT,
    SRT_REJX_FORBIDDEN,
    SRT_REJX_NOTFOUND,
    SRTO_ENFORCEDENCRYPTION,
    SRTO_FC,
    SRTO_PASSPHRASE,
    SRTO_RCVSYN,
    SRTO_SNDSYN,
    SRTO_STREAMID,
    SRTO_TRANSTYPE,
    SRTT_LIVE,
    EpollEvent,
    LibSrt,
    ListenCallback,
    SrtError,
    load,
    sockaddr_to_str,
)
from trio_core.srt.hub import (
    EMPTY_SNAPSHOT,
    Connection,
    Hub,
    Snapshot,
    check_address,
    check_against,
)
from trio_core.srt.streamid import StreamId, StreamIdRefused, check_stream_id
from trio_core.util.addresses import parse_address
from trio_core.util.rate_limit import RateLimit

__all__ = ["SrtEvent", "SrtServer"]

log = logging.getLogger(__name__)

WAIT_MS = 100  # epoll timeout: how fast the thread notices the stop flag
CHECK_INTERVAL = 0.5  # seconds between slow-subscriber checks
RECV_BURST = 256  # messages read from one publisher per wake-up (fairness between publishers)
BACKLOG = 64
EPOLL_SLOTS = 64  # events taken per srt_epoll_uwait (more ready sockets: the next wait)
EVENT_QUEUE = 256
EVENT_HISTORY = 200
REFUSALS_PER_SECOND = 20  # refusal events beyond this are only counted (a hostile caller
# retrying handshakes must not flood the log)

REJECT_CODES = {
    "INVALID": SRT_REJX_BAD_REQUEST,
    "FORBIDDEN": SRT_REJX_FORBIDDEN,
    "NOTFOUND": SRT_REJX_NOTFOUND,
    "CONFLICT": SRT_REJX_CONFLICT,
    "LIMIT": 1429,  # SRT_REJX_OVERLOAD ("too many requests")
}


@dataclass(frozen=True)
class SrtEvent:
    """Something that happened: ``handler`` CONNECT/PUBLISH/SUBSCRIBE, ``status`` as Core logs
    (START, STOP, INVALID, FORBIDDEN, CONFLICT, NOTFOUND, LIMIT, DROP), ``message`` details."""

    time: float
    handler: str
    status: str
    resource: str
    client: str
    message: str = ""


class SrtServer:
    """One SRT listener with its relay (see module docstring)."""

    def __init__(
        self,
        *,
        address: str = "127.0.0.1:0",
        passphrase: str = "",
        token: str = "",
        hub: Hub | None = None,
        lib: LibSrt | None = None,
    ) -> None:
        self.host, self._want_port = parse_address(address)
        if passphrase and not 10 <= len(passphrase) <= 79:
            raise ValueError(f"an SRT passphrase has 10 to 79 characters, not {len(passphrase)}")
        self.passphrase = passphrase
        self.token = token
        self.hub = hub or Hub()
        self._lib = lib
        self.port: int | None = None
        self.events: deque[SrtEvent] = deque(maxlen=EVENT_HISTORY)
        self.events_lost = 0
        self._snapshot: Snapshot = EMPTY_SNAPSHOT
        self._post: Callable[[SrtEvent], None] = self._log_event
        self._refusals = RateLimit(REFUSALS_PER_SECOND)
        self._on_event: list[Callable[[SrtEvent], None]] = []

    # -- public, for trio code -------------------------------------------------------------

    @property
    def lib(self) -> LibSrt:
        if self._lib is None:
            self._lib = load()
        return self._lib

    def add_listener(self, callback: Callable[[SrtEvent], None]) -> None:
        """Call ``callback(event)`` in trio for every event (after it is logged)."""
        self._on_event.append(callback)

    @property
    def snapshot(self) -> Snapshot:
        """The relay's state as the I/O thread last published it (immutable; any thread)."""
        return self._snapshot

    def relay_stats(self) -> RelayStats:
        """The relay's state for the ``relay_*`` metrics (``server="srt"``); any thread (reads
        what the I/O thread last published, and its counters)."""
        snap = self._snapshot
        readers = sum(len(socks) for socks in snap.subscribers.values())
        queued = 0
        for _ in range(3):  # the I/O thread may change the dict meanwhile: try again
            try:
                queued = sum(c.queued_bytes for c in list(self.hub.connections.values()))
                break
            except RuntimeError:
                continue
        counters = self.hub.counters
        return RelayStats(readers=readers, queued_bytes=queued, skips=counters.skips,
                          drops=counters.drops)

    def channels(self) -> dict[str, Any]:
        """Core's ``GET /api/v3/srt`` body (``api.SRTChannels``): publishers, subscribers,
        per-connection statistics; ``log`` stays empty (libsrt's log is not collected)."""
        snap = self._snapshot
        connections: dict[str, Any] = {}
        for sock in snap.peers:
            try:
                stats = self.lib.bstats(sock)
            except SrtError:
                continue  # closed meanwhile
            connections[str(sock)] = {"log": {}, "stats": core_stats(stats)}
        return {
            "publisher": {name: sock for name, sock in snap.publishers.items()
                          if str(sock) in connections},
            "subscriber": {name: [s for s in socks if str(s) in connections]
                           for name, socks in snap.subscribers.items()},
            "connections": connections,
            "log": {},
        }

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the port, serve until cancelled (SrtUnavailable / SrtError before
        ``started`` when libsrt is missing or the address cannot be bound)."""
        lib = self.lib
        liblog.install(lib)
        lib.startup()
        try:
            listener, callback = self._open_listener(lib)
            try:
                eid = lib.epoll_create()
                lib.epoll_add(eid, listener, SRT_EPOLL_IN | SRT_EPOLL_ERR)
            except BaseException:
                lib.close(listener)
                raise
        except BaseException:
            lib.cleanup()
            raise
        stop = threading.Event()
        send, receive = trio.open_memory_channel[SrtEvent](EVENT_QUEUE)
        token = trio.lowlevel.current_trio_token()

        def deliver(event: SrtEvent) -> None:  # runs in trio (run_sync_soon)
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self.events_lost += 1

        def post(event: SrtEvent) -> None:  # any thread
            try:
                token.run_sync_soon(deliver, event)
            except trio.RunFinishedError:
                pass

        self._post = post
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume, receive)
                nursery.start_soon(self._stop_on_cancel, stop)
                task_status.started(self.port)
                try:
                    await trio.to_thread.run_sync(
                        self._io_loop, lib, listener, eid, stop,
                        thread_name=f"srt-io:{self.port}", abandon_on_cancel=False,
                    )
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._post = self._log_event
            self._snapshot = EMPTY_SNAPSHOT
            send.close()
            with trio.CancelScope(shield=True):  # joins libsrt's threads (quick)
                await trio.to_thread.run_sync(lib.cleanup)
            del callback  # libsrt is cleaned up: nothing can call it any more

    # -- trio side -------------------------------------------------------------------------

    @staticmethod
    async def _stop_on_cancel(stop: threading.Event) -> None:
        try:
            await trio.sleep_forever()
        finally:
            stop.set()

    async def _consume(self, receive: trio.MemoryReceiveChannel[SrtEvent]) -> None:
        async with receive:
            async for event in receive:
                self._log_event(event)
                for callback in self._on_event:
                    callback(event)

    def _log_event(self, event: SrtEvent) -> None:
        self.events.append(event)
        level = logging.INFO if event.status in ("START", "STOP") else logging.WARNING
        log.log(level, "SRT %s %s %r from %s%s", event.handler, event.status, event.resource,
                event.client, f": {event.message}" if event.message else "")

    # -- listener setup (trio thread, non-blocking calls) ----------------------------------

    def _open_listener(self, lib: LibSrt) -> tuple[int, Any]:
        sock = lib.create_socket()
        try:
            lib.set_bool(sock, SRTO_RCVSYN, False)
            lib.set_bool(sock, SRTO_SNDSYN, False)
            lib.set_int(sock, SRTO_TRANSTYPE, SRTT_LIVE)
            lib.set_bool(sock, SRTO_ENFORCEDENCRYPTION, True)
            # accepted sockets inherit it: the same flight window as libsrt's defaults grant,
            # a receive loss list a third the size (~270 KiB less per connection, docs/srt.md)
            lib.set_int(sock, SRTO_FC, DEFAULT_RCVBUF_PACKETS)
            if self.passphrase:
                lib.set_str(sock, SRTO_PASSPHRASE, self.passphrase)
            lib.bind(sock, self.host, self._want_port)
            callback = ListenCallback(self._on_handshake)
            lib.listen_callback(sock, callback)
            lib.listen(sock, BACKLOG)
            self.port = int(lib.sockname(sock).rsplit(":", 1)[1])
        except BaseException:
            lib.close(sock)
            raise
        return sock, callback

    def _on_handshake(self, _opaque: Any, sock: int, hsversion: int, peeraddr: int | None,
                      streamid: bytes | None) -> int:
        """libsrt's listen callback (libsrt's receiver thread): 0 accepts, -1 rejects."""
        client = ""
        try:
            client = sockaddr_to_str(peeraddr)
            sid = self._stream_id(hsversion, (streamid or b"").decode("utf-8", "replace"), client)
            snap = self._snapshot
            check_against(snap, sid, self.hub.max_connections, self.hub.max_subscribers)
            check_address(snap.peers.values(), client, sid.resource, self.hub.max_per_address,
                          self.hub.unlimited_addresses)
            return 0
        except StreamIdRefused as exc:
            self.lib.set_reject_reason(sock, REJECT_CODES.get(exc.status, SRT_REJX_BAD_REQUEST))
            self._post_refusal(SrtEvent(time.time(), "CONNECT", exc.status, exc.resource,
                                        client, exc.message))
            return -1
        except BaseException as exc:  # never let an exception cross into C
            self._post_refusal(SrtEvent(time.time(), "CONNECT", "INVALID", "", client,
                                        repr(exc)))
            return -1

    def _post_refusal(self, event: SrtEvent) -> None:
        """Post a refusal unless over the rate limit (then it is only counted)."""
        suppressed = self._refusals.take(time.monotonic())
        if suppressed is None:
            return
        if suppressed:
            event = SrtEvent(event.time, event.handler, event.status, event.resource,
                             event.client, f"{event.message} ({suppressed} more refusals "
                             "not logged)")
        self._post(event)

    def _stream_id(self, hsversion: int, text: str, client: str) -> StreamId:
        if hsversion < 5:  # HSv4 callers have no stream id: Core makes them publish as themselves
            sid = StreamId(resource=client, mode="publish", token="")
            if self.token:
                raise StreamIdRefused("FORBIDDEN", "token required", sid.resource)
            return sid
        return check_stream_id(text, token=self.token)

    # -- the I/O thread ----------------------------------------------------------------------

    def _io_loop(self, lib: LibSrt, listener: int, eid: int, stop: threading.Event) -> None:
        io = _IoLoop(self, lib, listener, eid)
        try:
            while not stop.is_set():
                io.step()
        finally:
            io.close_all()


class _IoLoop:
    """The state of one run of the I/O thread (only that thread touches it)."""

    def __init__(self, server: SrtServer, lib: LibSrt, listener: int, eid: int) -> None:
        self.server = server
        self.lib = lib
        self.hub = server.hub
        self.listener = listener
        self.eid = eid
        self.events = (EpollEvent * EPOLL_SLOTS)()
        self.buf = ctypes.create_string_buffer(MAX_PAYLOAD + 44)
        self.next_check = time.monotonic() + CHECK_INTERVAL

    def post(self, handler: str, status: str, resource: str, client: str, message: str = "") -> None:
        self.server._post(SrtEvent(time.time(), handler, status, resource, client, message))

    def publish_snapshot(self) -> None:
        self.server._snapshot = self.hub.snapshot()

    def step(self) -> None:
        # libsrt returns how many sockets are ready, which may exceed the slots it filled in;
        # the others stay ready (level-triggered) and come with the next wait
        n = min(self.lib.epoll_wait(self.eid, self.events, WAIT_MS), len(self.events))
        for i in range(n):
            sock, flags = self.events[i].fd, self.events[i].events
            if sock == self.listener:
                self.accept_all()
                continue
            conn = self.hub.connections.get(sock)
            if conn is None:
                self.lib.epoll_remove(self.eid, sock)
                continue
            try:
                if conn.mode == "publish" and flags & SRT_EPOLL_IN:
                    self.pump(conn)
                elif flags & SRT_EPOLL_OUT and conn.sock in self.hub.connections:
                    self.flush(conn)
                if flags & SRT_EPOLL_ERR and conn.sock in self.hub.connections:
                    self.drop(conn, "STOP", "")
            except Exception as exc:  # one connection's failure must not stop the others
                log.exception("SRT connection %d (%r) failed", conn.sock, conn.resource)
                if conn.sock in self.hub.connections:
                    self.drop(conn, "STOP", f"internal error: {exc!r}")
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + CHECK_INTERVAL
            self.check_subscribers()

    def check_subscribers(self) -> None:
        """Drop subscribers with too much unacknowledged data in libsrt's send buffer."""
        for sub in self.hub.subscriber_list():
            try:
                backlog = self.lib.bstats(sub.sock).msSndBuf
            except SrtError:
                continue  # closed: its ERR event removes it
            if self.hub.too_slow(sub, backlog):
                sub.out.drop()  # counted as a reader drop
                self.drop(sub, "DROP", f"subscriber too slow ({backlog} ms unacknowledged)")

    def accept_all(self) -> None:
        while True:
            try:
                sock, client = self.lib.accept(self.listener)
            except SrtError as exc:
                if not exc.would_block:
                    log.warning("SRT accept failed: %s", exc)
                return
            try:
                text = self.lib.get_str(sock, SRTO_STREAMID)
                sid = self.server._stream_id(5 if text else 4, text, client)
                self.lib.set_bool(sock, SRTO_RCVSYN, False)
                self.lib.set_bool(sock, SRTO_SNDSYN, False)
                conn = self.hub.add(sock, sid, client, time.time())
            except StreamIdRefused as exc:
                self.lib.close(sock)
                self.server._post_refusal(SrtEvent(time.time(), "CONNECT", exc.status,
                                                   exc.resource, client, exc.message))
                continue
            except SrtError as exc:
                self.lib.close(sock)
                self.post("CONNECT", "INVALID", "", client, str(exc))
                continue
            events = SRT_EPOLL_ERR | (SRT_EPOLL_IN if conn.mode == "publish" else 0)
            try:
                self.lib.epoll_add(self.eid, sock, events)
            except SrtError as exc:
                self.hub.remove(sock)
                self.lib.close(sock)
                self.post("CONNECT", "INVALID", conn.resource, client, str(exc))
                continue
            self.publish_snapshot()
            handler = "PUBLISH" if conn.mode == "publish" else "SUBSCRIBE"
            self.post(handler, "START", conn.resource, client)

    def pump(self, publisher: Connection) -> None:
        """Relay up to RECV_BURST messages from ``publisher`` to its subscribers."""
        for _ in range(RECV_BURST):
            try:
                n = self.lib.recvmsg(publisher.sock, self.buf)
            except SrtError as exc:
                if not exc.would_block:
                    self.drop(publisher, "STOP", "")
                return
            if n <= 0:
                return
            publisher.received_packets += 1
            payload = ctypes.string_at(self.buf, n)
            for sub in self.hub.targets(publisher):
                self.send(sub, payload)

    def send(self, sub: Connection, payload: bytes) -> None:
        if sub.queue:
            if not sub.enqueue(payload):
                self.drop(sub, "DROP", "subscriber too slow (queue full)")
            return
        try:
            self.lib.sendmsg(sub.sock, payload)
            sub.sent_packets += 1
        except SrtError as exc:
            if not exc.would_block:
                self.drop(sub, "STOP", "")
                return
            if not sub.enqueue(payload):
                self.drop(sub, "DROP", "subscriber too slow (queue full)")
                return
            try:
                self.lib.epoll_update(self.eid, sub.sock, SRT_EPOLL_ERR | SRT_EPOLL_OUT)
            except SrtError:
                self.drop(sub, "STOP", "")

    def flush(self, sub: Connection) -> None:
        while (payload := sub.peek()) is not None:
            try:
                self.lib.sendmsg(sub.sock, payload)
            except SrtError as exc:
                if not exc.would_block:
                    self.drop(sub, "STOP", "")
                return
            sub.pop()
            sub.sent_packets += 1
        try:
            self.lib.epoll_update(self.eid, sub.sock, SRT_EPOLL_ERR)
        except SrtError:
            self.drop(sub, "STOP", "")

    def drop(self, conn: Connection, status: str, message: str) -> None:
        for gone in self.hub.remove(conn.sock):
            self.lib.epoll_remove(self.eid, gone.sock)
            self.lib.close(gone.sock)
            handler = "PUBLISH" if gone.mode == "publish" else "SUBSCRIBE"
            if gone is conn:
                self.post(handler, status, gone.resource, gone.peer, message)
            else:
                self.post(handler, "STOP", gone.resource, gone.peer, "publisher gone")
        self.publish_snapshot()

    def close_all(self) -> None:
        for sock in list(self.hub.connections):
            self.hub.remove(sock)
            self.lib.epoll_remove(self.eid, sock)
            self.lib.close(sock)
        self.publish_snapshot()
        self.lib.epoll_remove(self.eid, self.listener)
        self.lib.close(self.listener)
        self.lib.epoll_release(self.eid)


def core_stats(s: Any) -> dict[str, Any]:
    """libsrt's ``SRT_TRACEBSTATS`` in Core's ``api.SRTStatistics`` field names."""
    out: dict[str, Any] = {
        "timestamp_ms": s.msTimeStamp,
        "sent_pkt": s.pktSentTotal, "recv_pkt": s.pktRecvTotal,
        "sent_unique_pkt": s.pktSentUniqueTotal, "recv_unique_pkt": s.pktRecvUniqueTotal,
        "send_loss_pkt": s.pktSndLossTotal, "recv_loss_pkt": s.pktRcvLossTotal,
        "sent_retrans_pkt": s.pktRetransTotal, "recv_retran_pkts": s.pktRcvRetrans,
        "sent_ack_pkt": s.pktSentACKTotal, "recv_ack_pkt": s.pktRecvACKTotal,
        "sent_nak_pkt": s.pktSentNAKTotal, "recv_nak_pkt": s.pktRecvNAKTotal,
        "send_km_pkt": 0, "recv_km_pkt": 0,
        "send_duration_us": s.usSndDurationTotal,
        "send_drop_pkt": s.pktSndDropTotal, "recv_drop_pkt": s.pktRcvDropTotal,
        "recv_undecrypt_pkt": s.pktRcvUndecryptTotal,
        "sent_bytes": s.byteSentTotal, "recv_bytes": s.byteRecvTotal,
        "sent_unique_bytes": s.byteSentUniqueTotal, "recv_unique_bytes": s.byteRecvUniqueTotal,
        "recv_loss_bytes": s.byteRcvLossTotal, "sent_retrans_bytes": s.byteRetransTotal,
        "send_drop_bytes": s.byteSndDropTotal, "recv_drop_bytes": s.byteRcvDropTotal,
        "recv_undecrypt_bytes": s.byteRcvUndecryptTotal,
        "pkt_send_period_us": s.usPktSndPeriod,
        "flow_window_pkt": max(s.pktFlowWindow, 0), "flight_size_pkt": max(s.pktFlightSize, 0),
        "rtt_ms": s.msRTT, "bandwidth_mbit": s.mbpsBandwidth,
        "avail_send_buf_bytes": max(s.byteAvailSndBuf, 0),
        "avail_recv_buf_bytes": max(s.byteAvailRcvBuf, 0),
        "max_bandwidth_mbit": s.mbpsMaxBW, "mss_bytes": max(s.byteMSS, 0),
        "send_buf_pkt": max(s.pktSndBuf, 0), "send_buf_bytes": max(s.byteSndBuf, 0),
        "send_buf_ms": max(s.msSndBuf, 0), "send_tsbpd_delay_ms": max(s.msSndTsbPdDelay, 0),
        "recv_buf_pkt": max(s.pktRcvBuf, 0), "recv_buf_bytes": max(s.byteRcvBuf, 0),
        "recv_buf_ms": max(s.msRcvBuf, 0), "recv_tsbpd_delay_ms": max(s.msRcvTsbPdDelay, 0),
        "reorder_tolerance_pkt": max(s.pktReorderTolerance, 0),
        "pkt_recv_avg_belated_time_ms": int(_finite(s.pktRcvAvgBelatedTime)),
    }
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = _finite(value)
    return out


def _finite(value: float) -> float:
    """libsrt reports NaN for averages without samples; JSON (and Core) want numbers."""
    return value if math.isfinite(value) else 0.0
