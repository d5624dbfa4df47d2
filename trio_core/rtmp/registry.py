"""Published streams and their players: the fan-out of one publisher to many players.

A :class:`Channel` is one published path. The publisher's connection task calls
:meth:`Channel.on_media` for every audio/video message; the channel keeps the sequence
headers (AVC/HEVC/AV1/VP9 decoder configuration, AAC AudioSpecificConfig), ``onMetaData`` and
a GOP cache (every message since the last video keyframe, bounded) and hands each message to
every :class:`Player` without ever waiting: :meth:`Player.offer` appends to a bounded queue
that the player's own writer task drains.

Players start at a keyframe: sequence headers first, then the cached GOP, then live
messages; their timestamps are rebased so that the first keyframe is at 0. A player whose
queue exceeds ``max_queue_bytes`` (it reads slower than the stream arrives) loses its queue
and skips to the next keyframe; after ``max_skips`` skips it is dropped (``Player.dropped``
is set and its writer ends the connection). The publisher and the other players never wait
for a slow one. Audio-only streams start players at once.

:class:`StreamRegistry` maps paths to channels: one publisher per path (``publish`` returns
None for a path already published), many players. Synchronous, not thread-safe: it lives in
one trio run; only :class:`Player` touches trio (an Event to wake its writer).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from rtmp.chunk import Message, MessageType, continuation, encode_message, message_header
from rtmp.connection import AUDIO_CSID, DATA_CSID, VIDEO_CSID
from rtmp.errors import RtmpError
from rtmp.media import parse_audio, parse_video

__all__ = ["Channel", "Player", "StreamRegistry"]

log = logging.getLogger(__name__)

EXTENDED = 0xFFFFFF


@dataclass(slots=True)
class _Cached:
    type_id: int
    timestamp: int
    payload: bytes
    first: bytes  # the first chunk's data (shared by every player)
    cont: bytes  # chunk continuation for the server's chunk size (timestamps < 2^24-1 ms)


def _cached(type_id: int, timestamp: int, payload: bytes, chunk_size: int) -> _Cached:
    csid = VIDEO_CSID if type_id == MessageType.VIDEO else AUDIO_CSID
    return _Cached(type_id, timestamp, payload, payload[:chunk_size],
                   continuation(payload, chunk_size, csid))


class Player:
    """One playing connection's queue (bounded; skip to keyframe; drop after ``max_skips``).

    ``offer``/``push_control`` never block. The writer task calls :meth:`wait` and
    :meth:`take`. ``closed`` ends the writer once the queue is empty (publisher gone);
    ``dropped`` ends it at once (too slow).
    """

    def __init__(self, name: str, stream_id: int, chunk_size: int, *, max_queue_bytes: int,
                 max_skips: int, remote: str = "") -> None:
        self.name = name
        self.stream_id = stream_id
        self.chunk_size = chunk_size
        self.remote = remote
        self.max_queue_bytes = max_queue_bytes
        self.max_skips = max_skips
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.started = False  # got its first keyframe (or audio-only start)
        self.waiting_keyframe = True
        self.base: int | None = None
        self.skips = 0
        self.dropped = False
        self.closed = False
        self.bytes_sent = 0
        self.messages = 0
        self.since = time.time()
        self.conn: Any = None  # the player's ServerConnection (end-of-stream notices)
        self.send_scope: trio.CancelScope | None = None  # the writer's current send
        self._wake = trio.Event()

    # --- producer side (the publisher's task) ---------------------------------------------

    def push_control(self, data: bytes) -> None:
        """Queue bytes that must not be dropped (status messages, replies); wakes the writer.
        A peer that makes us queue more than twice ``max_queue_bytes`` this way without reading
        (e.g. pings while never reading the answers) is dropped."""
        if data and not self.dropped:
            self.queue.append(data)
            self.queued_bytes += len(data)
            if self.queued_bytes > 2 * self.max_queue_bytes:
                log.warning("RTMP: %s dropped: %d bytes of replies it does not read",
                            self.remote, self.queued_bytes)
                self.dropped = True
                self.queue.clear()
                self.queued_bytes = 0
                if self.send_scope is not None:
                    self.send_scope.cancel()
            self._wake.set()

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

    def offer(self, item: _Cached, keyframe: bool) -> None:
        """Queue a live message; skips to the next keyframe when the queue is full."""
        if self.dropped or self.closed:
            return
        if self.waiting_keyframe:
            if not keyframe:
                return
            self.waiting_keyframe = False
        head, first, cont = self.parts(item)
        size = len(head) + len(first) + len(cont)
        if self.queued_bytes + size > self.max_queue_bytes:
            self.queue.clear()
            self.queued_bytes = 0
            self.skips += 1
            if self.skips > self.max_skips:
                log.warning("RTMP: player %s of %s dropped (too slow: %d skips)",
                            self.remote, self.name, self.skips - 1)
                self.dropped = True
                self._wake.set()
                if self.send_scope is not None:  # abandon a send that is stuck right now
                    self.send_scope.cancel()
                return
            log.info("RTMP: player %s of %s is too slow; skipping to the next keyframe",
                     self.remote, self.name)
            self.waiting_keyframe = True
            if keyframe:
                self.waiting_keyframe = False
            else:
                return
        self.queue.append(head)
        self.queue.append(first)
        if cont:
            self.queue.append(cont)
        self.queued_bytes += size
        self.messages += 1
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    # --- consumer side (the player's writer task) -------------------------------------------

    async def wait(self) -> None:
        """Wait until something is queued (or the player is closed/dropped)."""
        if not self.queue and not self.closed and not self.dropped:
            await self._wake.wait()
        self._wake = trio.Event()

    def take(self) -> bytes:
        data = b"".join(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self.bytes_sent += len(data)
        return data


@dataclass
class Channel:
    """One published path."""

    path: str
    remote: str = ""
    max_gop_bytes: int = 32 * 1024 * 1024
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
    gop: list[tuple[_Cached, bool]] = field(default_factory=list)
    gop_bytes: int = 0
    bytes_in: int = 0
    messages_in: int = 0
    dropped_messages: int = 0

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
        item = _cached(type_id, timestamp, payload, self.chunk_size)
        if is_config:
            if type_id == MessageType.VIDEO:
                self.video_config = item
            else:
                self.audio_config = item
            for player in self.players:  # a codec change reaches every started player
                if player.started:
                    player.push_control(player.encode(item))
            return
        if keyframe:
            self.gop.clear()
            self.gop_bytes = 0
        if self.gop or keyframe or not self.has_video:
            if self.gop_bytes + len(payload) > self.max_gop_bytes:
                self.gop.clear()  # a GOP this long is not worth caching: wait for a keyframe
                self.gop_bytes = 0
            elif self.has_video:
                self.gop.append((item, keyframe))
                self.gop_bytes += len(payload)
        for player in self.players:
            if not player.started:
                if keyframe or not self.has_video:
                    self._start(player, item)
                continue
            player.offer(item, keyframe or not self.has_video)

    def _start(self, player: Player, first: _Cached) -> None:
        """Headers and the first message, rebased to the first message's timestamp."""
        player.started = True
        player.waiting_keyframe = False
        player.base = first.timestamp
        for cfg in (self.video_config, self.audio_config):
            if cfg is not None:
                player.push_control(player.encode(_Cached(cfg.type_id, first.timestamp, cfg.payload, cfg.first, cfg.cont)))
        player.offer(first, True)

    def add_player(self, player: Player) -> None:
        """Attach a player; it starts on the cached GOP when there is one, else on the next
        keyframe (audio-only streams: the next audio message)."""
        self.players.append(player)
        if self.gop and self.gop[0][1]:
            first, _ = self.gop[0]
            self._start(player, first)
            for item, keyframe in self.gop[1:]:
                player.offer(item, keyframe)

    def remove_player(self, player: Player) -> None:
        if player in self.players:
            self.players.remove(player)

    def close(self, on_player: Callable[[Player], None] | None = None) -> None:
        """The publisher is gone: every player ends (after its queue is flushed)."""
        for player in list(self.players):
            if on_player is not None:
                on_player(player)
            player.close()
        self.players.clear()
        self.gop.clear()


class StreamRegistry:
    """Published channels by path (one publisher each)."""

    def __init__(self, chunk_size: int = 4096) -> None:
        self.channels: dict[str, Channel] = {}
        self.chunk_size = chunk_size

    def publish(self, path: str, remote: str = "") -> Channel | None:
        """A new channel for ``path``, or None when it is already being published."""
        if path in self.channels:
            return None
        channel = Channel(path, remote=remote, chunk_size=self.chunk_size)
        self.channels[path] = channel
        return channel

    def unpublish(self, channel: Channel) -> None:
        if self.channels.get(channel.path) is channel:
            del self.channels[channel.path]

    def get(self, path: str) -> Channel | None:
        return self.channels.get(path)

    def names(self) -> list[str]:
        return sorted(self.channels)
