"""Source: one producer (FFmpeg ``-f rtp``) feeding many viewers.

A :class:`Source` binds one loopback UDP socket per track (port 0) and hands the bound
ports to the producer. It reads with ``trio.lowlevel.wait_readable`` and drains each socket
with non-blocking ``recvfrom`` (one reader task per socket), and fans every packet out to
its :class:`~rtp.peer.Peer` objects synchronously: no per-packet task switch.

Per track it keeps a *normalised* sequence/timestamp space that stays continuous when the
producer restarts (new SSRC, sequence and timestamps), a short retransmission history
(NACK) and, for video, a GOP cache (packets since the first packet of the last keyframe
access unit; the shared :class:`relay.GopCache`, bounded by ``gop_max_packets`` and
``gop_max_bytes``, emptied on overflow until the next keyframe, and on a producer restart)
so that a new viewer starts decoding at once and a PLI can be answered. An IDR that arrives without
SPS/PPS in its access unit gets a STAP-A built from the SDP's ``sprop-parameter-sets``
injected in front of it.

A Source may also be fed by something other than FFmpeg's UDP sockets (a WHIP publisher's
decrypted RTP): made with ``sockets=False`` it binds nothing and the feeder calls
:meth:`Source.on_datagram` itself; such a feeder may set :attr:`Source.upstream` so that the
viewers' keyframe requests and unrepaired NACKs reach the producer (:meth:`request_keyframe`,
:meth:`request_repair`; no-ops for FFmpeg, which cannot take RTCP).

Fan-out (``rtp.fanout``): with the native engine each track has a C fan-out table
(:attr:`Source.tables`) that viewers join; :meth:`Source._emit` hands each packet to it once
(the workers rewrite, protect and send per viewer). Viewers whose transport is not the UDP
mux socket, and every viewer without the native engine, are in :attr:`Source.fanout` (the
Python loop). The engine is the forwarder's (``engine=``), or the Source's own (made in
:meth:`run` with ``workers`` threads, closed — threads joined — when ``run`` ends).

Cancellation: :meth:`Source.run` owns a nursery in which every Peer of this Source runs.
Cancelling ``run`` closes the Source's tables (queued packets of this Source are skipped at
once), cancels all Peers (each closes its C viewer: nothing is sent for it afterwards),
closes every socket the Source opened and, if the engine is its own, joins its threads.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from relay import GopCache
from relay.gop import GOP_MAX_BYTES, GOP_MAX_PACKETS

from . import vp8
from .errors import ParseError
from .fanout import FLAG_KEYFRAME, FLAG_VIDEO, fan_out_python, open_engine
from .h264 import build_stap_a, nal_types, parameter_sets, parse_sprop, profile_level_id_from_sps
from .packet import parse_rtp
from .sdp import SourceTrack, parse_source_sdp
from .sockets import close_udp_socket, open_udp_socket, receive_datagrams

if TYPE_CHECKING:
    from .peer import OutTrack, Peer

__all__ = ["MediaPacket", "Source", "TrackState", "Upstream"]

#: Slots in the per-track retransmission ring (indexed by normalised sequence number; a
#: divisor of 65536). 8192 slots hold 3 s of a ~25 Mb/s stream.
HISTORY_SLOTS = 8192
#: Packets older than this are not retransmitted: the GOP a viewer gets on joining is up to
#: ~2 s old, and its NACKs for that must still be answered.
HISTORY_SECONDS = 3.0
#: The GOP cache is dropped (until the next keyframe) beyond GOP_MAX_PACKETS packets or
#: GOP_MAX_BYTES bytes (``relay.gop``: the ``relay.gop_max_*`` defaults).
#: A sequence jump larger than this (without an SSRC change) is treated as a restart.
MAX_SEQ_JUMP = 3000
#: Closed viewers kept (with their close reason and counters) for the process state.
RECENTLY_CLOSED_MAX = 50
RECENTLY_CLOSED_SECONDS = 300.0
DEFAULT_CLOCK = {"video": 90000, "audio": 48000}
DEFAULT_CODEC = {"video": "H264", "audio": "opus", "video2": "VP8"}
#: Track names a Source accepts: one audio track, a video track and a second video track
#: (another codec of the same picture, for viewers that cannot take the first).
TRACK_NAMES = ("video", "audio", "video2")


class Upstream(Protocol):
    """A producer that takes feedback (a WHIP publisher): see :attr:`Source.upstream`."""

    def request_keyframe(self, now: float) -> None: ...

    def request_repair(self, kind: str, ssrc: int, seq: int, now: float) -> None: ...


def media_of(kind: str) -> str:
    """The media type of a track name: ``"video2"`` is video."""
    return "video" if kind.startswith("video") else "audio"


@dataclass(slots=True)
class MediaPacket:
    """One packet from the producer with its normalised sequence number and timestamp."""

    kind: str
    seq: int
    ts: int
    data: bytes
    keyframe: bool
    arrival: float

    @property
    def size(self) -> int:
        """Bytes counted against the GOP cache's bound (a :class:`relay.Unit`)."""
        return len(self.data)


class TrackState:
    """Per-track state of a Source: normalisation, history, GOP cache, counters."""

    def __init__(self, kind: str, *, gop_max_bytes: int = GOP_MAX_BYTES,
                 gop_max_packets: int = GOP_MAX_PACKETS) -> None:
        self.kind = kind
        self.media = media_of(kind)
        self.clock_rate = DEFAULT_CLOCK.get(self.media, 90000)
        # what our FFmpeg legs produce; the producer's SDP confirms or corrects it, but
        # packets (e.g. the first keyframe) may arrive before FFmpeg has written its SDP
        self.codec_name = DEFAULT_CODEC.get(kind, "")
        #: "H264", "VP8" or "" for video tracks: how keyframes are recognised.
        self.video_codec = self.codec_name.upper() if self.media == "video" else ""
        self.port = 0
        self.src_ssrc: int | None = None
        self.src_seq = 0
        self.seq_off = 0
        self.ts_off = 0
        self.last_seq = -1  # normalised, -1 before the first packet
        self.last_ts = 0
        self.last_arrival = 0.0
        self.history: list[MediaPacket | None] = [None] * HISTORY_SLOTS
        self.gop_cache: GopCache[MediaPacket] = GopCache(gop_max_bytes, gop_max_packets)
        self.sprop: list[bytes] = []
        self.au_ts: int | None = None
        self.au_has_sps = False
        self.packets = 0
        self.bytes = 0
        self.restarts = 0
        self.lost = 0
        self.injected = 0
        self.keyframes = 0
        #: packets with the marker bit: video frames (audio: packets) sent by the producer
        self.frames = 0

    @property
    def gop(self) -> list[MediaPacket]:
        """The cached GOP, keyframe first (read-only; replaced, not mutated, when it changes)."""
        return self.gop_cache.units

    def lookup(self, seq: int, now: float) -> MediaPacket | None:
        """The packet with normalised sequence ``seq`` if still in the history."""
        pkt = self.history[seq % HISTORY_SLOTS]
        if pkt is None or pkt.seq != seq or now - pkt.arrival > HISTORY_SECONDS:
            return None
        return pkt

    def rtp_time(self, now: float) -> int:
        """The normalised RTP timestamp corresponding to trio time ``now``."""
        return (self.last_ts + int((now - self.last_arrival) * self.clock_rate)) & 0xFFFFFFFF

    def stats(self) -> dict[str, object]:
        return {
            "codec": self.codec_name,
            "port": self.port,
            "packets": self.packets,
            "bytes": self.bytes,
            "restarts": self.restarts,
            "lost": self.lost,
            "keyframes": self.keyframes,
            "frames": self.frames,
            "gop_packets": len(self.gop),
            "injected_parameter_sets": self.injected,
        }


class Source:
    """One producer's tracks, fanned out to the Peers attached to it.

    Args:
        source_id: registry key (the process id in trio-core).
        kinds: the tracks the producer sends, e.g. ``("video", "audio")``.
        host: where to bind the producer sockets (loopback).

    ``await nursery.start(source.run)`` returns ``dict[kind, port]``. ``set_sdp`` learns the
    codecs (FFmpeg's ``-sdp_file``); viewers can be negotiated once :attr:`tracks` is set
    (:meth:`wait_ready`).
    """

    def __init__(self, source_id: str, kinds: Sequence[str] = ("video", "audio"), *,
                 host: str = "127.0.0.1", gop_max_bytes: int = GOP_MAX_BYTES,
                 gop_max_packets: int = GOP_MAX_PACKETS, sockets: bool = True,
                 engine: Any = None, workers: int | None = 1) -> None:
        if not kinds or any(k not in TRACK_NAMES for k in kinds):
            raise ValueError(f"kinds must be 'video', 'audio' and/or 'video2', not {kinds!r}")
        self.id = source_id
        self.kinds = tuple(kinds)
        self.host = host
        self.ports: dict[str, int] = {}
        self.state: dict[str, TrackState] = {
            k: TrackState(k, gop_max_bytes=gop_max_bytes, gop_max_packets=gop_max_packets)
            for k in self.kinds}
        self.tracks: dict[str, SourceTrack] = {}
        self.peers: dict[str, Peer] = {}
        #: The Python fast path: per kind, the outbound tracks of every viewer in steady
        #: state that is not on the native fan-out.
        self.fanout: dict[str, list[OutTrack]] = {k: [] for k in self.kinds}
        #: The native fan-out engine (``rtp._fanout.Engine``) while running, else None.
        self.engine: Any = None
        #: Per kind, the native fan-out table of the track (while running, with an engine).
        self.tables: dict[str, Any] = {}
        self._given_engine = engine
        self._workers = workers
        self._own_engine: Any = None
        self._peer_scope = trio.CancelScope(shield=True)
        #: The slow path: receivers whose ``forward(pkt)`` is called (a viewer still
        #: sending its initial GOP burst queues live packets this way).
        self.listeners: list[Peer] = []
        self.dropped: collections.Counter[str] = collections.Counter()
        #: (trio time, final stats) of the last closed viewers, newest last
        self.recently_closed: collections.deque[tuple[float, dict[str, object]]] = (
            collections.deque(maxlen=RECENTLY_CLOSED_MAX))
        self.closed = False
        self._ready = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._sockets: list[socket.socket] = []
        #: False: no producer sockets; the feeder calls :meth:`on_datagram` (WHIP ingest)
        self.bind_sockets = sockets
        #: the producer's feedback channel (None: it takes none, as FFmpeg's RTP output)
        self.upstream: Upstream | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[dict[str, int]] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Bind the track sockets, report their ports, receive until cancelled.

        On cancellation (or any error) every Peer is cancelled and every socket closed.
        """
        try:
            if self._given_engine is not None:
                self.engine = self._given_engine
            else:
                self.engine = self._own_engine = open_engine(self._workers)
            if self.engine is not None:
                self.tables = {kind: self.engine.table() for kind in self.kinds}
            for kind in self.kinds if self.bind_sockets else ():
                sock = open_udp_socket(self.host, 0)
                self._sockets.append(sock)
                self.ports[kind] = sock.getsockname()[1]
                self.state[kind].port = self.ports[kind]
            async with trio.open_nursery() as nursery:
                try:
                    self._nursery = await nursery.start(self._run_peers)
                    for kind, sock in zip(self.kinds, self._sockets, strict=False):
                        nursery.start_soon(self._reader, kind, sock)
                    task_status.started(dict(self.ports))
                    await trio.sleep_forever()
                finally:
                    # first the tables (the workers skip what is queued for this Source),
                    # then the viewers: closing one then never waits for a worker to finish
                    # a send batch of this Source
                    for table in self.tables.values():
                        table.close()
                    self._peer_scope.cancel()
        finally:
            self.closed = True
            self._nursery = None
            for table in self.tables.values():
                table.close()  # the workers skip what is still queued for this Source
            for peer in list(self.peers.values()):
                peer.close("source closed")
            self.listeners.clear()
            for fan in self.fanout.values():
                fan.clear()
            for sock in self._sockets:
                close_udp_socket(sock)
            self._sockets.clear()
            self.tables = {}
            self.engine = None
            if self._own_engine is not None:
                self._own_engine.close()  # joins its threads
                self._own_engine = None

    async def _run_peers(self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
                         ) -> None:
        """The nursery the Peers run in, cancelled by :meth:`run` (after the tables closed),
        not directly by whatever cancels the Source."""
        with self._peer_scope:
            async with trio.open_nursery() as peers:
                task_status.started(peers)
                await trio.sleep_forever()

    def attach(self, peer: Peer) -> None:
        """Run ``peer`` in this Source's nursery (it ends when the Source does)."""
        if self._nursery is None or self.closed:
            raise RuntimeError(f"source {self.id!r} is not running")
        self.peers[peer.id] = peer
        self._nursery.start_soon(peer.run)

    def detach(self, peer: Peer) -> None:
        """Forget ``peer`` (called by the Peer when it ends); its final statistics stay in
        :meth:`closed_viewers` for a while."""
        if self.peers.pop(peer.id, None) is not None:
            self.recently_closed.append((trio.current_time(), peer.stats()))
        if peer in self.listeners:
            self.listeners.remove(peer)
        for track in peer.out.values():
            fan = self.fanout.get(track.kind)
            if fan is not None and track in fan:
                fan.remove(track)

    # -- feedback toward the producer ---------------------------------------------------------

    def request_keyframe(self, now: float) -> None:
        """A viewer asked for a keyframe (PLI/FIR): pass it to the producer if it takes
        feedback (it rate-limits)."""
        if self.upstream is not None:
            self.upstream.request_keyframe(now)

    def request_repair(self, kind: str, seq: int, now: float) -> None:
        """A viewer NACKed normalised sequence ``seq`` of ``kind`` and the history missed it:
        ask the producer to resend it if it takes feedback."""
        upstream = self.upstream
        st = self.state.get(kind)
        if upstream is not None and st is not None and st.src_ssrc is not None:
            upstream.request_repair(kind, st.src_ssrc, (seq - st.seq_off) & 0xFFFF, now)

    # -- codec parameters ------------------------------------------------------------------

    def set_sdp(self, text: str) -> None:
        """Learn codec parameters from the producer's SDP (raises SdpError)."""
        tracks = parse_source_sdp(text)
        self.set_tracks({k: t for k, t in tracks.items() if k in self.state})

    def set_tracks(self, tracks: dict[str, SourceTrack]) -> None:
        """Set the source tracks (codec, clock rate, H264 parameter sets)."""
        if not tracks:
            raise ValueError("no track of this source's kinds")
        for kind, track in tracks.items():
            st = self.state[kind]
            st.clock_rate = track.codec.clock_rate or st.clock_rate
            st.codec_name = track.codec.name
            st.video_codec = track.codec.name.upper() if st.media == "video" else ""
            sprop = track.sprop_parameter_sets
            if sprop:
                try:
                    st.sprop = parse_sprop(sprop)
                except ParseError:
                    st.sprop = []
        self.tracks = dict(tracks)
        self._ready.set()

    @property
    def ready(self) -> bool:
        return bool(self.tracks)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the codec parameters; True when known."""
        with trio.move_on_after(timeout):
            await self._ready.wait()
        return self.ready

    def closed_viewers(self, now: float | None = None) -> list[dict[str, object]]:
        """Final statistics (with ``close_reason``) of viewers closed in the last
        :data:`RECENTLY_CLOSED_SECONDS` seconds (at most :data:`RECENTLY_CLOSED_MAX`)."""
        now = trio.current_time() if now is None else now
        recent = self.recently_closed
        while recent and now - recent[0][0] > RECENTLY_CLOSED_SECONDS:
            recent.popleft()
        return [stats for _, stats in recent]

    def stats(self) -> dict[str, object]:
        return {
            "tracks": {k: st.stats() for k, st in self.state.items()},
            "peers": len(self.peers),
            "dropped": dict(self.dropped),
        }

    # -- receive path ----------------------------------------------------------------------

    async def _reader(self, kind: str, sock: socket.socket) -> None:
        on_datagram = self.on_datagram
        await receive_datagrams(sock, lambda data, _addr, now: on_datagram(kind, data, now),
                                self.dropped)

    def on_datagram(self, kind: str, data: bytes, now: float) -> None:
        """Handle one datagram from the producer on track ``kind`` (sans-IO entry point)."""
        if len(data) >= 2 and 192 <= data[1] <= 223:
            self.dropped["producer-rtcp"] += 1  # FFmpeg's SRs: we send our own per viewer
            return
        try:
            hdr = parse_rtp(data)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return
        st = self.state[kind]
        if st.src_ssrc != hdr.ssrc or _seq_distance(st.src_seq, hdr.sequence) > MAX_SEQ_JUMP:
            self._resync(st, hdr.ssrc, hdr.sequence, hdr.timestamp, now)
        else:
            ahead = (hdr.sequence - st.src_seq) & 0xFFFF
            if ahead < 0x8000:  # not a late (reordered) packet
                if ahead > 1:
                    st.lost += ahead - 1  # the producer's packets that never reached us
                st.src_seq = hdr.sequence
        ts = (hdr.timestamp + st.ts_off) & 0xFFFFFFFF
        keyframe = False
        if st.video_codec == "H264":
            end = len(data) - hdr.padding
            types = nal_types(data[hdr.header_size:end]) if end > hdr.header_size else []
            if st.au_ts != ts:
                st.au_ts = ts
                st.au_has_sps = False
            if 7 in types:
                st.au_has_sps = True
                if not st.sprop or not self._has_plid(st.kind):
                    self._learn_parameter_sets(st, data[hdr.header_size:end])
            if 5 in types and not st.au_has_sps and st.sprop:
                self._inject_parameter_sets(st, data, hdr.sequence, ts, now)
                st.au_has_sps = True
            keyframe = 5 in types or 7 in types
        elif st.video_codec == "VP8":
            keyframe = vp8.is_keyframe(data[hdr.header_size:len(data) - hdr.padding])
        seq = (hdr.sequence + st.seq_off) & 0xFFFF
        self._emit(st, MediaPacket(kind, seq, ts, data, keyframe, now))

    def _has_plid(self, kind: str = "video") -> bool:
        track = self.tracks.get(kind)
        return track is None or track.profile_level_id is not None

    def _learn_parameter_sets(self, st: TrackState, payload: bytes) -> None:
        """In-band SPS/PPS: keep them for injection; fill a missing profile-level-id.

        libx264 without ``+global_header`` writes an SDP with neither
        ``sprop-parameter-sets`` nor ``profile-level-id``; the answer must then name the
        stream's real profile (Safari shows black on a mismatch).
        """
        units = parameter_sets(payload)
        sps = [u for u in units if u[0] & 0x1F == 7]
        pps = [u for u in units if u[0] & 0x1F == 8]
        if sps and pps and not st.sprop:
            st.sprop = [sps[0], pps[0]]
        track = self.tracks.get(st.kind)
        if sps and track is not None and track.profile_level_id is None:
            try:
                track.codec.fmtp["profile-level-id"] = profile_level_id_from_sps(sps[0])
            except ParseError:
                pass

    def _resync(self, st: TrackState, ssrc: int, src_seq: int, src_ts: int, now: float) -> None:
        """The producer (re)started: continue our normalised numbering after the last one."""
        if st.last_seq < 0:
            st.seq_off = 0
            st.ts_off = 0
        else:
            st.restarts += 1
            next_seq = st.last_seq + 1
            gap = max(1, int((now - st.last_arrival) * st.clock_rate))
            st.seq_off = (next_seq - src_seq) & 0xFFFF
            st.ts_off = (st.last_ts + gap - src_ts) & 0xFFFFFFFF
        st.src_ssrc = ssrc
        st.src_seq = src_seq
        st.gop_cache.clear()
        st.au_ts = None

    def _inject_parameter_sets(self, st: TrackState, template: bytes, src_seq: int,
                               ts: int, now: float) -> None:
        """Put a STAP-A [SPS, PPS] in front of an IDR that came without them."""
        payload = build_stap_a(st.sprop)
        header = bytearray(template[:12])
        header[0] &= 0x80  # V=2, no padding/extension/CSRC
        header[1] &= 0x7F  # no marker
        seq = (src_seq + st.seq_off) & 0xFFFF
        st.seq_off = (st.seq_off + 1) & 0xFFFF  # the IDR and everything after shift by one
        st.injected += 1
        self._emit(st, MediaPacket(st.kind, seq, ts, bytes(header) + payload, True, now))

    def _emit(self, st: TrackState, pkt: MediaPacket) -> None:
        st.last_seq = pkt.seq
        st.last_ts = pkt.ts
        st.last_arrival = pkt.arrival
        st.packets += 1
        st.bytes += len(pkt.data)
        if pkt.data[1] & 0x80:
            st.frames += 1
        st.history[pkt.seq % HISTORY_SLOTS] = pkt
        if st.media == "video":
            cache = st.gop_cache
            starts = pkt.keyframe
            if starts:  # the first packet of a keyframe access unit starts a GOP; the others
                first = cache.first  # (same timestamp) continue it
                if first is not None and first.keyframe and first.ts == pkt.ts:
                    starts = False
                else:
                    st.keyframes += 1
            cache.push(pkt, starts)
        table = self.tables.get(st.kind)
        if table is not None:
            table.fan_out(pkt.data, pkt.seq, pkt.ts,
                          (FLAG_VIDEO | (FLAG_KEYFRAME if pkt.keyframe else 0))
                          if st.media == "video" else 0)
        fan = self.fanout[st.kind]
        if fan:
            fan_out_python(fan, pkt)
        if self.listeners:
            for peer in list(self.listeners):  # forward() may leave the list
                peer.forward(pkt)


def _seq_distance(a: int, b: int) -> int:
    """Absolute distance between two 16-bit sequence numbers."""
    d = (b - a) & 0xFFFF
    return min(d, 0x10000 - d)

