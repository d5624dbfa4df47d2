"""Published streams and their players: the RTMP adapter over the shared relay policy.

A :class:`Channel` is one published path. The publisher's connection task calls
:meth:`Channel.on_media` for every audio/video message; the channel keeps the sequence
headers (AVC/HEVC/AV1/VP9 decoder configuration, AAC AudioSpecificConfig), ``onMetaData`` and
a :class:`relay.GopCache` (every message since the last video keyframe, bounded by
``max_gop_bytes`` of payload; on overflow it waits for the next keyframe) and hands each
message to every :class:`Player` without ever waiting: a player is a :class:`relay.ReaderQueue`
that the player's own writer task drains. A player whose connection gave it a socket fd
(plain RTMP, not RTMPS) is sent to directly when its writer is idle: one non-blocking
``writev`` of its header and the shared body pieces, from the producer's task (no join, no
task switch); what the socket does not take waits for the writer task, in order.

A player whose connection has a native sink (``Player.sink``, the RTMP server's sender pool:
``rtp._fanout``) is written by the pool instead: the channel sends each live message once
to its ``group`` (the workers build each player's header — stream id, rebased timestamp —
and apply the slow-player policy below in C), the join burst (configurations, then the cached
GOP as one unit) and control messages go to the sink in order; ``poll_native`` folds the
sink's skips, drop and bytes into the player's counters (``relay_*`` metrics, session egress).

Players start at a keyframe: sequence headers first, then the cached GOP, then live
messages; their timestamps are rebased so that the first keyframe is at 0. A player whose
queue would exceed ``max_queue_bytes`` (it reads slower than the stream arrives) loses its
queue and skips to the next keyframe; the overflow after ``max_skips`` skips drops it
(``Player.dropped`` is set and its writer ends the connection). The publisher and the other
players never wait for a slow one. Audio-only streams start players at once.

:class:`StreamRegistry` maps paths to channels over a :class:`relay.PathRegistry`: one
publisher per path (``publish`` returns None for a path already published), many players.
Synchronous, not thread-safe: it lives in one trio run; only :class:`Player` touches trio (an
Event to wake its writer).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

from relay import GopCache, Offer, PathRegistry, ReaderQueue, Refused, RelayCounters
from rtmp.chunk import Message, MessageType, continuation, encode_message, message_header
from rtmp.connection import AUDIO_CSID, DATA_CSID, VIDEO_CSID
from rtmp.errors import RtmpError
from rtmp.media import parse_audio, parse_video

__all__ = ["Channel", "Player", "StreamRegistry"]

log = logging.getLogger(__name__)

EXTENDED = 0xFFFFFF
#: pieces per ``writev`` (Linux's IOV_MAX is 1024)
IOV_MAX = 1024
#: ``Sink.poll`` state bits (``rtp/_fanout.c``)
SINK_DROPPED, SINK_FAILED, SINK_FINISHED, SINK_CLOSED = 1, 2, 4, 8
#: defaults (the ``relay.*`` settings carry the same values)
DEFAULT_MAX_GOP_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class _Cached:
    """One media message as every player shares it (a :class:`relay.Unit`)."""

    type_id: int
    timestamp: int
    payload: bytes
    first: bytes  # the first chunk's data (shared by every player)
    cont: bytes  # chunk continuation for the server's chunk size (timestamps < 2^24-1 ms)
    keyframe: bool = False  # a video keyframe: a player may start here

    @property
    def size(self) -> int:
        return len(self.payload)


def _cached(type_id: int, timestamp: int, payload: bytes, chunk_size: int,
            keyframe: bool = False) -> _Cached:
    csid = VIDEO_CSID if type_id == MessageType.VIDEO else AUDIO_CSID
    return _Cached(type_id, timestamp, payload, payload[:chunk_size],
                   continuation(payload, chunk_size, csid), keyframe)


class Player(ReaderQueue[bytes]):
    """One playing connection's queue: a :class:`relay.ReaderQueue` of wire bytes (bounded;
    skip to keyframe; drop after ``max_skips``), plus the player's RTMP framing.

    ``offer``/``push_control`` never block. The writer task calls :meth:`wait` and
    :meth:`take`. ``closed`` ends the writer once the queue is empty (publisher gone);
    ``dropped`` ends it at once (too slow).
    """

    def __init__(self, name: str, stream_id: int, chunk_size: int, *, max_queue_bytes: int,
                 max_skips: int, remote: str = "", counters: RelayCounters | None = None) -> None:
        super().__init__(max_queue_bytes, max_skips, counters=counters)
        self.name = name
        self.stream_id = stream_id
        self.chunk_size = chunk_size
        self.remote = remote
        self.started = False  # got its first keyframe (or audio-only start)
        self.base: int | None = None
        self._bytes_py = 0
        self.since = time.time()
        self.conn: Any = None  # the player's ServerConnection (end-of-stream notices)
        self.send_scope: trio.CancelScope | None = None  # the writer's current send
        #: the connection's socket fd for direct sends (None: the writer task sends everything,
        #: e.g. TLS); set by the connection owner, cleared before the socket closes
        self.fd: int | None = None
        #: accounting of what was sent (bytes), e.g. the session's egress
        self.on_sent: Callable[[int], None] | None = None
        self.busy = False  # the writer task holds data it has not sent completely
        self._pending: list[bytes | memoryview] = []  # the unsent rest of a direct send
        self._wake = trio.Event()
        #: the native sender pool's sink writing this connection (None: the Python path);
        #: set by the connection owner before anything is queued, closed before the socket
        self.sink: Any = None
        self._native_counted = 0  # sink bytes already reported through on_sent
        self._native_skips = 0  # sink skips already folded into the counters
        self._burst: list[bytes] | None = None  # a join burst being collected (native)

    @property
    def max_queue_bytes(self) -> int:
        return self.max_bytes

    @property
    def has_data(self) -> bool:
        """Something is left to send (queued, or the rest of a direct send)."""
        return bool(self.queue or self._pending)

    @property
    def bytes_sent(self) -> int:
        """Bytes the kernel took for this player (Python sends and the native sink's)."""
        return self._bytes_py + (self.sink.bytes_out if self.sink is not None else 0)

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self._bytes_py = value - (self.sink.bytes_out if self.sink is not None else 0)

    @property
    def queued_total(self) -> int:
        """Bytes waiting for this player's socket (the native sink's queue included)."""
        return self.queued_bytes + (self.sink.queued if self.sink is not None else 0)

    @property
    def messages(self) -> int:
        """Media messages queued so far."""
        return self.units

    # --- producer side (the publisher's task) ---------------------------------------------

    def push_control(self, data: bytes) -> None:
        """Queue bytes that must not be dropped (status messages, replies); wakes the writer.
        A peer that makes us queue more than twice ``max_queue_bytes`` this way without reading
        (e.g. pings while never reading the answers) is dropped."""
        if data and not self.dropped and self.sink is not None:
            self.sink.unit(data, False, True)  # in order with the media, never skipped
            return
        if data and not self.dropped:
            pending = self.queued_bytes + len(data)
            if self.push(len(data), data) is Offer.DROPPED:
                log.warning("RTMP: %s dropped: %d bytes of replies it does not read",
                            self.remote, pending)
                if self.send_scope is not None:
                    self.send_scope.cancel()
                self._wake.set()
                return
            self._kick()

    def rebase(self, timestamp: int) -> int:
        if self.base is None:
            self.base = timestamp
        delta = (timestamp - self.base) & 0xFFFFFFFF
        return 0 if delta >= 0x80000000 else delta  # earlier than the base: clamp to 0

    def parts(self, item: _Cached) -> tuple[bytes, bytes, bytes]:
        """The message as this player receives it: its own header (rebased timestamp, its
        stream id), then the first chunk's data and the continuation, both shared by every
        player — a queue of slow players holds references, not copies."""
        ts = self.rebase(item.timestamp)
        csid = VIDEO_CSID if item.type_id == MessageType.VIDEO else AUDIO_CSID
        payload = item.payload
        cont = item.cont if ts < EXTENDED else continuation(payload, self.chunk_size, csid, ts)
        return (message_header(item.type_id, self.stream_id, ts, len(payload), csid),
                item.first, cont)

    def encode(self, item: _Cached) -> bytes:
        return b"".join(self.parts(item))

    def offer_message(self, item: _Cached, keyframe: bool) -> None:
        """Queue a live message; skips to the next keyframe when the queue is full."""
        if self.sink is not None:  # the join burst of a native player (its worker decides)
            if self._burst is not None:
                self._burst.extend(self.parts(item))
            elif not self.dropped:
                self.sink.unit(b"".join(self.parts(item)), keyframe, False)
            return
        head, first, cont = self.parts(item)
        size = len(head) + len(first) + len(cont)
        outcome = (self.offer(keyframe, size, head, first, cont) if cont
                   else self.offer(keyframe, size, head, first))
        if outcome is Offer.QUEUED:
            self._kick()
        elif outcome is Offer.DROPPED:
            self.clear()
            log.warning("RTMP: player %s of %s dropped (too slow: %d skips)",
                        self.remote, self.name, self.skips - 1)
            self._wake.set()
            if self.send_scope is not None:  # abandon a send that is stuck right now
                self.send_scope.cancel()
        elif outcome is Offer.SKIPPED or outcome is Offer.RESUMED:
            log.info("RTMP: player %s of %s is too slow; skipping to the next keyframe",
                     self.remote, self.name)
            if outcome is Offer.RESUMED:
                self._kick()

    def _kick(self) -> None:
        """Send what is queued now, from the producer's task, when the writer task is idle:
        one non-blocking ``writev`` of the queued pieces (scatter-gather, no join, no task
        switch); a player that keeps up never wakes its writer. What the socket does not take
        (or everything, without a direct fd) is left to the writer task, which waits until the
        socket is writable."""
        fd = self.fd
        if fd is None or self.busy or self._pending or self.dropped:
            self._wake.set()
            return
        parts = self.drain()
        if len(parts) > IOV_MAX:
            batch = [parts.popleft() for _ in range(IOV_MAX)]
            tail: list[bytes | memoryview] = list(parts)
        else:
            batch, tail = list(parts), []
        try:
            sent = os.writev(fd, batch)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the writer's send will meet the error and end the connection
            sent = 0
        if sent:
            self.bytes_sent += sent
            if self.on_sent is not None:
                self.on_sent(sent)
        rest: list[bytes | memoryview] = []
        for piece in batch:
            if sent >= len(piece):
                sent -= len(piece)
                continue
            rest.append(memoryview(piece)[sent:] if sent else piece)
            sent = 0
        rest.extend(tail)
        if rest:
            self._pending = rest
            self._wake.set()

    def close(self) -> None:
        if not self.closed and self.sink is not None:
            self.sink.finish()  # the sink reports finished once everything queued is out
        super().close()
        self._wake.set()

    # --- the native sink (the connection owner's side) ---------------------------------------

    def open_burst(self) -> None:
        """Collect the messages offered until :meth:`close_burst` into one unit (a join
        burst — the cached GOP — is one command for the pool, not one per message)."""
        if self.sink is not None:
            self._burst = []

    def close_burst(self) -> None:
        """Hand the collected burst to the sink as one unit that starts at a keyframe."""
        parts, self._burst = self._burst, None
        if parts and self.sink is not None and not self.dropped:
            self.sink.unit(b"".join(parts), True, False)

    def native_event(self) -> None:
        """The sink needs attention (told by the pool's hub): wake the writer task, and
        abandon its wait for writability when the player was dropped."""
        self._wake.set()
        if self.sink is not None and self.send_scope is not None:
            _, state, _ = self.sink.poll()
            if state & (SINK_DROPPED | SINK_FAILED):
                self.send_scope.cancel()

    def poll_native(self) -> tuple[int, int]:
        """Write what the kernel takes of the sink's queue; fold its skips, drop and bytes
        into the counters. Returns (bytes still queued, state bits ``SINK_*``)."""
        queued, state, skips = self.sink.poll()
        if skips > self._native_skips:
            new = skips - self._native_skips
            self._native_skips = skips
            if state & SINK_DROPPED:
                new -= 1  # the overflow that dropped it is not a skip
            if new > 0:
                self.skips += new
                if self.counters is not None:
                    self.counters.skips += new
                log.info("RTMP: player %s of %s is too slow; skipping to the next keyframe",
                         self.remote, self.name)
        if state & SINK_DROPPED and not self.dropped:
            self.skips += 1
            self.drop()
            log.warning("RTMP: player %s of %s dropped (too slow: %d skips)",
                        self.remote, self.name, self.skips - 1)
        self.account_native()
        return queued, state

    def account_native(self) -> None:
        """Report the sink's new bytes through ``on_sent`` (session egress)."""
        if self.sink is None:
            return
        out = self.sink.bytes_out
        delta = out - self._native_counted
        if delta > 0:
            self._native_counted = out
            if self.on_sent is not None:
                self.on_sent(delta)

    async def wait_native(self) -> None:
        """Wait until the hub reports something for this player's sink."""
        await self._wake.wait()
        self._wake = trio.Event()

    # --- consumer side (the player's writer task) -------------------------------------------

    async def wait(self) -> None:
        """Wait until something is queued (or the player is closed/dropped)."""
        if not self.queue and not self._pending and not self.closed and not self.dropped:
            await self._wake.wait()
        self._wake = trio.Event()

    def take(self) -> bytes:
        """Everything to send, oldest first (the unsent rest of a direct send first); the
        writer marks itself :attr:`busy` while it sends it (no direct send overtakes it)."""
        pending, self._pending = self._pending, []
        data = b"".join([*pending, *self.drain()]) if pending else b"".join(self.drain())
        self.bytes_sent += len(data)
        return data


@dataclass
class Channel:
    """One published path."""

    path: str
    remote: str = ""
    max_gop_bytes: int = DEFAULT_MAX_GOP_BYTES
    chunk_size: int = 4096
    created_at: float = field(default_factory=time.time)
    metadata: bytes | None = None
    video_config: _Cached | None = None
    audio_config: _Cached | None = None
    has_video: bool = False
    has_audio: bool = False
    video_codec: str = ""
    audio_codec: str = ""
    players: list[Player] = field(default_factory=list)
    #: the native sender pool's group of this channel's started native players (None: the
    #: Python path only); made by the registry while a pool is available
    group: Any = None
    gop: GopCache[_Cached] = field(init=False)
    bytes_in: int = 0
    messages_in: int = 0
    dropped_messages: int = 0

    def __post_init__(self) -> None:
        self.gop = GopCache(self.max_gop_bytes)
        self._live: list[Player] = []  # started players on the Python path
        self._waiting: list[Player] = []  # players waiting for their first keyframe
        self._native = 0  # started players in the group

    @property
    def gop_bytes(self) -> int:
        """Payload bytes in the GOP cache."""
        return self.gop.bytes

    def set_metadata(self, payload: bytes, values: dict[str, object]) -> None:
        """``onMetaData`` from the publisher: kept for new players, sent to started ones."""
        update = self.metadata is not None
        self.metadata = payload
        if values.get("videocodecid") not in (None, 0, 0.0, ""):
            self.has_video = True
        if update:
            for player in self.players:
                if player.started:
                    player.push_control(encode_message(Message(
                        MessageType.DATA_AMF0, player.stream_id, 0, payload, DATA_CSID), player.chunk_size))

    def on_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        """One message from the publisher: update headers/GOP cache and fan it out."""
        self.bytes_in += len(payload)
        self.messages_in += 1
        try:
            if type_id == MessageType.VIDEO:
                vinfo = parse_video(payload)
                is_config, keyframe = vinfo.sequence_header, vinfo.keyframe
                self.has_video = True
                if vinfo.codec != "unknown":
                    self.video_codec = vinfo.codec
            else:
                ainfo = parse_audio(payload)
                is_config, keyframe = ainfo.sequence_header, False
                self.has_audio = True
                self.audio_codec = ainfo.codec
        except RtmpError:
            self.dropped_messages += 1
            return
        item = _cached(type_id, timestamp, payload, self.chunk_size, keyframe)
        if is_config:
            if type_id == MessageType.VIDEO:
                self.video_config = item
            else:
                self.audio_config = item
            for player in self.players:  # a codec change reaches every started player
                if player.started:
                    player.push_control(player.encode(item))
            return
        has_video = self.has_video
        if has_video:  # audio-only streams cache nothing: players start at once
            self.gop.push(item, keyframe)
        start = keyframe or not has_video
        if self._native:  # every started native player: once, its worker does the rest
            csid = VIDEO_CSID if type_id == MessageType.VIDEO else AUDIO_CSID
            self.group.send(item.first, item.cont, type_id, csid, timestamp & 0xFFFFFFFF,
                            len(payload), self.chunk_size, start)
        for player in self._live:
            player.offer_message(item, start)
        if start and self._waiting:
            waiting, self._waiting = self._waiting, []
            for player in waiting:
                self._start(player, item)
                player.offer_message(item, True)
                self._started(player)

    def _start(self, player: Player, first: _Cached) -> None:
        """The decoder configurations, rebased to the first message's timestamp (the caller
        offers ``first`` next)."""
        player.started = True
        player.waiting_keyframe = False
        player.base = first.timestamp
        for cfg in (self.video_config, self.audio_config):
            if cfg is not None:
                player.push_control(player.encode(_Cached(cfg.type_id, first.timestamp, cfg.payload, cfg.first, cfg.cont)))

    def _started(self, player: Player) -> None:
        """The player takes live messages from now on: in the group when native."""
        if player.sink is not None and self.group is not None:
            player.sink.join(self.group, player.stream_id, (player.base or 0) & 0xFFFFFFFF)
            self._native += 1
        else:
            self._live.append(player)

    def add_player(self, player: Player) -> None:
        """Attach a player; it starts on the cached GOP when there is one, else on the next
        keyframe (audio-only streams: the next audio message)."""
        self.players.append(player)
        if player.sink is not None and self.group is None:
            raise RuntimeError("a native player on a channel without a sender pool group")
        first = self.gop.first
        if first is not None:
            self._start(player, first)  # the configurations: control, before the burst
            player.open_burst()
            player.offer_message(first, True)
            units = self.gop.units
            for i in range(1, len(units)):
                player.offer_message(units[i], units[i].keyframe)
            player.close_burst()
            self._started(player)
        else:
            self._waiting.append(player)

    def remove_player(self, player: Player) -> None:
        if player in self.players:
            self.players.remove(player)
            if player in self._waiting:
                self._waiting.remove(player)
            elif player in self._live:
                self._live.remove(player)
            elif player.sink is not None and player.started:
                player.sink.leave()
                self._native -= 1

    def close(self, on_player: Callable[[Player], None] | None = None) -> None:
        """The publisher is gone: every player ends (after its queue is flushed)."""
        for player in list(self.players):
            if on_player is not None:
                on_player(player)
            player.close()
        self.players.clear()
        self._live.clear()
        self._waiting.clear()
        self._native = 0
        self.group = None  # messages still queued for it are sent, then the finish
        self.gop.clear()


class StreamRegistry:
    """Published channels by path (one publisher each) over a :class:`relay.PathRegistry`;
    players are kept by their channel (the fan-out)."""

    def __init__(self, chunk_size: int = 4096, *,
                 max_gop_bytes: int = DEFAULT_MAX_GOP_BYTES) -> None:
        self.paths: PathRegistry[Channel, Player] = PathRegistry()
        self.chunk_size = chunk_size
        self.max_gop_bytes = max_gop_bytes
        #: the native sender pool (``rtp._fanout.Engine``) while the server holds one: new
        #: channels get a group on it
        self.engine: Any = None

    @property
    def channels(self) -> dict[str, Channel]:
        """Channels by path (read-only view of the registry's publishers)."""
        return self.paths.publishers

    def publish(self, path: str, remote: str = "") -> Channel | None:
        """A new channel for ``path``, or None when it is already being published."""
        channel = Channel(path, remote=remote, chunk_size=self.chunk_size,
                          max_gop_bytes=self.max_gop_bytes,
                          group=self.engine.group() if self.engine is not None else None)
        try:
            self.paths.publish(path, channel)
        except Refused:
            return None
        return channel

    def unpublish(self, channel: Channel) -> None:
        self.paths.unpublish(channel.path, channel)

    def get(self, path: str) -> Channel | None:
        return self.paths.get(path)

    def names(self) -> list[str]:
        return self.paths.names()

    def players(self) -> Iterator[Player]:
        """Every player of every channel."""
        for channel in self.paths.publishers.values():
            yield from channel.players
