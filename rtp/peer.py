"""Peer: one WebRTC viewer of a Source.

A Peer is the per-viewer state machine glued from the sans-IO cores: ICE-lite
(:class:`~rtp.stun.IceLite`), DTLS-SRTP (:class:`~rtp.dtls.DtlsEndpoint` then
:class:`~rtp.srtp.SrtpSession`) and RTP/RTCP. The :class:`~rtp.mux.UdpMux` hands it the
viewer's datagrams (``handle_stun``, ``handle_dtls``, ``handle_rtcp``) and the
:class:`~rtp.source.Source` hands it media (``forward``); both calls are synchronous and
send through the mux's plain non-blocking socket.

Per track the Peer has its own SSRC (from the SDP answer), PT (the viewer's number) and
random sequence/timestamp offsets over the Source's normalised (restart-proof) numbering,
so viewers never see a producer restart. Once DTLS completes it first sends the Source's
cached GOP (in small paced bursts, live packets queued meanwhile) so the first frame
decodes without waiting for a keyframe. It answers NACKs from the Source's history and
PLI/FIR by resending the cached keyframe, sends an RTCP Sender Report per track about
every second, and closes itself when consent expires (no valid STUN for
``consent_timeout`` seconds), when setup does not finish in ``setup_timeout`` seconds,
when DTLS fails (e.g. certificate fingerprint mismatch) or when the viewer says goodbye.
Whatever closes it (WHEP DELETE, the process or server stopping, a reload that changed the
WebRTC settings), a connected Peer says goodbye first: an SRTCP BYE for each of its SSRCs,
then the DTLS close_notify alert (kept ready after the DTLS state was released, see
:meth:`rtp.dtls.DtlsEndpoint.release`), so the viewer knows at once instead of after its
~30-40 s consent/timeout; both are a few non-blocking sends, before any socket closes.

Transport (issue 21): a viewer's path is UDP through the mux or an ICE-TCP connection
(:mod:`rtp.tcp`, ``via=`` on ``handle_stun``/``handle_dtls``); whichever the latest check with
USE-CANDIDATE came over carries media (``self.tcp`` is None for UDP). With the C fan-out
(:data:`rtp.fanout.STREAMS`) a viewer on ICE-TCP is native like a UDP one: its C viewer is
*attached* to the connection (:meth:`rtp.tcp.TcpConnection.attach`) and its worker frames and
writes the media, with the connection's byte limit and keyframe gate, in C; an ICE switch
UDP ↔ TCP only changes the C viewer's transport (same SRTP session). Without it, tracks on
TCP are not *native* (:class:`OutTrack`): the Peer stays off the Source's fan-out and sends
from :meth:`forward`, where the connection's keyframe gate skips media for a slow TCP viewer.
:meth:`restart_ice` (WHEP ICE restart) swaps the local ICE credentials and keeps everything
else. Consent expiry closes with reason ``consent-expired``.

Cancellation: :meth:`run` (the Peer's timer task, started in the Source's nursery) ends
when the Peer closes; cancelling it closes the Peer. :meth:`close` is idempotent.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pylibsrtp
import trio

from .dtls import Certificate, DtlsEndpoint
from .errors import ParseError
from .fanout import MAX_TRACKS, REFUSALS, STREAMS, viewer_keys
from .ice_dtls import IceDtlsPath
from .packet import parse_rtp, rewrite
from .resend import SeqMap
from .rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    build_bye,
    build_rr,
    build_sdes_cname,
    build_sr,
    parse_rtcp,
)
from .rtcp import rtt_from_report as _rtt
from .sdp import NegotiatedTrack
from .srtp import SrtpSession, carry_roc, new_tx_context, stream_roc
from .stun import IceLite

if TYPE_CHECKING:
    from .dtls import SrtpKeys
    from .media import SourcePacket, SourceView
    from .mux import UdpMux
    from .tcp import TcpConnection

__all__ = ["Peer"]

#: One structured line per session event (``webrtc <event> session=… source=… k=v …``):
#: offer, ice-connected, ice-switched, dtls-connected, dtls-failed, first-media,
#: feedback (PLI/NACK bursts, at most every FEEDBACK_LOG_INTERVAL s), closed.
log = logging.getLogger("rtp.session")
FEEDBACK_LOG_INTERVAL = 5.0

SR_INTERVAL = 1.0
#: what a sent packet counts as (``_send_protected``; the C viewer's ``send`` kinds)
MEDIA, RETRANSMISSION, RTX = 0, 1, 2
BURST_PACKETS = 32
BURST_PAUSE = 0.002
PLI_MIN_INTERVAL = 1.0
#: Seconds a GOP burst waits for a congested ICE-TCP connection before it is given up.
TCP_BURST_WAIT = 2.0
#: Seconds after the handshake when the DTLS connection is freed at the latest (it goes as soon
#: as the viewer's first valid SRTCP arrives; see DtlsEndpoint.release).
DTLS_RELEASE_AFTER = 10.0


def _not_ready(data: bytes) -> bytes:
    raise ValueError("no SRTP keys yet")


def _not_sending(data: bytes, addr: tuple[str, int]) -> None:
    raise OSError("no socket yet")


class _Counter:
    """One counter of :class:`OutTrack`: what the Python path counted (the ``field``
    attribute) plus what its C viewer slot counted (``counters()[index]``); setting it sets
    the Python part so that the sum is the value set."""

    def __init__(self, index: int, field: str, doc: str) -> None:
        self.index, self.field, self.__doc__ = index, field, doc

    def __get__(self, track: OutTrack | None, owner: type) -> Any:
        if track is None:
            return self
        return getattr(track, self.field) + track._native(self.index)

    def __set__(self, track: OutTrack, value: int) -> None:
        setattr(track, self.field, value - track._native(self.index))


class OutTrack:
    """What this viewer gets for one source track.

    Its payload type, SSRC and seq/ts offsets (``seq_delta``, ``ts_delta``: the Peer's
    authoritative copy) and its counters. ``packets``, ``bytes``, ``dropped`` and
    ``retransmitted`` add what the Python path counted (``*_py``) and, once the viewer is on
    the native fan-out (:meth:`bind`), what its C viewer slot counted.

    The Python path (``rtp.fanout.fan_out_python`` and the Peer's own sends) uses
    ``protect``, ``sendto`` and ``addr``, filled in once DTLS is up.

    ``native_send`` is the transport hook (issue 18/21 contract): False when this track's
    transport is not the UDP mux socket (e.g. an ICE-TCP connection), so that ``sendmmsg`` on
    the mux socket cannot carry it; the viewer then takes the Python path — protect on the
    trio thread, then ``sendto`` (whatever the transport put there: framing, a bounded
    queue). A viewer with any such track is not put on the native fan-out at all.
    """

    __slots__ = ("kind", "payload_type", "ssrc", "seq_delta", "ts_delta", "packets_py",
                 "bytes_py", "retransmitted_py", "dropped_py", "protect", "sendto", "addr",
                 "srtp_ctx", "fd", "rtx_payload_type", "rtx_ssrc", "rtx_seq", "native_send",
                 "native", "slot")

    def __init__(self, kind: str, payload_type: int, ssrc: int, seq_delta: int, ts_delta: int,
                 packets: int = 0, bytes: int = 0, retransmitted: int = 0, dropped: int = 0,
                 protect: Callable[[bytes], bytes] = _not_ready,
                 sendto: Callable[[bytes, tuple[str, int]], object] = _not_sending,
                 addr: tuple[str, int] = ("0.0.0.0", 0), srtp_ctx: int = 0, fd: int = -1,
                 rtx_payload_type: int = -1, rtx_ssrc: int = 0, rtx_seq: int = 0,
                 native_send: bool = True) -> None:
        self.kind = kind
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.seq_delta = seq_delta
        self.ts_delta = ts_delta
        self.packets_py = packets
        self.bytes_py = bytes
        self.retransmitted_py = retransmitted
        self.dropped_py = dropped
        self.protect = protect
        self.sendto = sendto
        self.addr = addr
        #: the libsrtp context address of the Python path's session (informational)
        self.srtp_ctx = srtp_ctx
        #: the mux socket the viewer's address talks to (-1: none)
        self.fd = fd
        #: RTX (RFC 4588) payload type (-1: not negotiated), SSRC and next sequence number
        self.rtx_payload_type = rtx_payload_type
        self.rtx_ssrc = rtx_ssrc
        self.rtx_seq = rtx_seq
        self.native_send = native_send
        #: the C viewer (``rtp._fanout.Viewer``) this track is a slot of, or None
        self.native: Any = None
        self.slot = -1

    def bind(self, viewer: Any, slot: int) -> None:
        """Count from now on also what slot ``slot`` of the C ``viewer`` sends."""
        self.native = viewer
        self.slot = slot

    def _native(self, index: int) -> int:
        viewer = self.native
        return 0 if viewer is None else int(viewer.counters(self.slot)[index])

    packets = _Counter(0, "packets_py", "Media packets sent (the kernel took them).")
    bytes = _Counter(1, "bytes_py", "Bytes of those packets (SRTP included).")
    dropped = _Counter(2, "dropped_py",
                       "Packets not sent to this viewer (full socket buffer or ring, SRTP "
                       "refusal, ...).")
    retransmitted = _Counter(3, "retransmitted_py", "NACK repairs sent (plain or RTX).")

    def __repr__(self) -> str:
        return (f"OutTrack({self.kind!r}, pt={self.payload_type}, ssrc={self.ssrc:#x}, "
                f"native={self.native is not None})")


class Peer(IceDtlsPath):
    """One viewer. Created by the Forwarder, run in its Source's nursery.

    Args:
        peer_id: the secret session id (WHEP resource).
        source: the Source this viewer watches.
        mux: the UDP mux that carries this viewer's traffic.
        certificate: our DTLS certificate (its fingerprint is in the answer).
        remote_fingerprint: the viewer's sha-256 fingerprint from its offer.
        ice_ufrag, ice_pwd: our ICE credentials from the answer; remote_ufrag: the viewer's.
        tracks: negotiated tracks by kind (PT, SSRC) from the answer.
        cname: the RTCP CNAME announced in the answer.
        client: the IP address the offer was posted from ("" when unknown).
    """

    def __init__(self, *, peer_id: str, source: SourceView, mux: UdpMux, certificate: Certificate,
                 remote_fingerprint: str, ice_ufrag: str, ice_pwd: str, remote_ufrag: str,
                 tracks: dict[str, NegotiatedTrack], cname: str,
                 consent_timeout: float = 30.0, setup_timeout: float = 20.0,
                 client: str = "") -> None:
        self.id = peer_id
        #: the IP address the offer came from (admission limits count pending ones per client)
        self.client = client
        self.source = source
        self.mux = mux
        self.cname = cname
        self.ice = IceLite(ice_ufrag, ice_pwd, remote_ufrag)
        #: the negotiated tracks (mid, PT, SSRC per track name), as answered
        self.negotiated = dict(tracks)
        self.dtls = DtlsEndpoint(certificate, remote_fingerprint, "server")
        self.srtp: SrtpSession | None = None
        self.out: dict[str, OutTrack] = {
            kind: OutTrack(kind, t.payload_type, t.ssrc, random.getrandbits(16),
                           random.getrandbits(32),
                           rtx_payload_type=-1 if t.rtx_payload_type is None
                           else t.rtx_payload_type,
                           rtx_ssrc=t.rtx_ssrc or 0, rtx_seq=random.getrandbits(16))
            for kind, t in tracks.items()
        }
        #: the source track this viewer's video comes from ("video" or "video2"), if any
        self._video = next((k for k in self.out if k.startswith("video")), "")
        #: per kind: which source packet each of our sequence numbers carried
        self._seqmaps = {kind: SeqMap(t.seq_delta, t.ts_delta) for kind, t in self.out.items()}
        self._by_ssrc = {t.ssrc: t for t in self.out.values()}
        self.consent_timeout = consent_timeout
        self.setup_timeout = setup_timeout
        #: Where media goes: the nominated address (else the DTLS client's address).
        self.addr: tuple[str, int] | None = None
        #: Every remote address that passed a STUN check (the mux routes them to us).
        self.addrs: set[tuple[str, int]] = set()
        #: ICE-TCP connections that passed a STUN check, by remote address
        self.tcp_paths: dict[tuple[str, int], TcpConnection] = {}
        #: the selected ICE-TCP connection (None: media goes over UDP to ``addr``)
        self.tcp: TcpConnection | None = None
        self._dtls_via: TcpConnection | None = None
        #: ICE restarts (WHEP PATCH with new credentials) so far
        self.ice_restarts = 0
        #: "udp" or "tcp": the path media takes (kept after close); None before ICE
        self.transport: str | None = None
        self.created = trio.current_time()
        self.created_wall = time.time()
        self.connected_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._dropped: collections.Counter[str] = collections.Counter()
        #: the C viewer (``rtp._fanout.Viewer``) when this viewer is on the native fan-out
        self._viewer: Any = None
        self._viewer_ctx = 0  # its libsrtp session (owned by C; read only in _leave_native)
        #: the ICE-TCP connection the C viewer writes (attached), if any
        self._stream: TcpConnection | None = None
        self._refused_seen = [0] * len(REFUSALS)
        self.nacks = 0
        self.plis = 0
        self.firs = 0
        self.rtcp_bytes = 0  # SRTCP bytes received from the viewer (session ingress)
        #: the viewer's latest RTCP receiver report per track (by kind): fraction_lost
        #: (0..1), packets_lost (cumulative), jitter_seconds, rtt_seconds (None until an SR
        #: of ours was echoed)
        self.receiver_reports: dict[str, dict[str, float | int | None]] = {}
        #: PLI/FIR answers: GOP replays sent, and their packets; NACK repairs sent as RTX
        self.keyframe_replays = 0
        self.replayed_packets = 0
        self._rtx_sent = 0
        self._dtls_addr: tuple[str, int] | None = None
        self._dtls_heard = False
        #: live packets queued while a burst (GOP on join, replay for a PLI) goes out
        self._pending: list[SourcePacket] | None = None
        #: the burst: (packet, our sequence number, our timestamp)
        self._burst: list[tuple[SourcePacket, int, int]] = []
        #: normalised timestamp of the frame in progress when a PLI asked for a replay (the
        #: replay goes out at the next frame boundary); None when no replay is waiting
        self._replay_after: int | None = None
        self._next_sr = 0.0
        self._last_pli_answer = -1e9
        self._scope: trio.CancelScope | None = None
        self._wait: trio.CancelScope | None = None
        self.closed_wall: float | None = None
        self.first_media_at: float | None = None
        self._feedback_logged = (0.0, 0, 0, 0)  # time, nacks, plis, nack misses
        self.event("offer", client=client or "-",
                   tracks=",".join(f"{k}:{t.codec.rtpmap()}" + ("+rtx" if t.rtx_ssrc else "")
                                   for k, t in tracks.items()))

    def event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        """Log one structured session event (``key=value`` pairs after the event name)."""
        if log.isEnabledFor(level):
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            log.log(level, "webrtc %s session=%s source=%s %s", name, self.id[:8],
                    self.source.id, text)

    # -- state ---------------------------------------------------------------------------

    @property
    def dropped(self) -> collections.Counter[str]:
        """What was not sent or not accepted, by reason (SRTP refusals of the native
        worker's sends included)."""
        viewer = self._viewer
        if viewer is not None:
            seen = self._refused_seen
            for i, count in enumerate(viewer.refused()):
                if count != seen[i]:
                    self._dropped[REFUSALS[i]] += count - seen[i]
                    seen[i] = count
        return self._dropped

    @property
    def rtx_sent(self) -> int:
        """NACK repairs sent on the RTX stream."""
        viewer = self._viewer
        return self._rtx_sent + (0 if viewer is None else viewer.rtx_sent)

    @property
    def native(self) -> bool:
        """True when this viewer's RTP goes through the native fan-out (a C viewer)."""
        return self._viewer is not None

    @property
    def live(self) -> bool:
        """True once DTLS-SRTP is up and media flows."""
        return self.srtp is not None and not self.closed

    def stats(self) -> dict[str, object]:
        """Viewer statistics for the process state (JSON-ready)."""
        now = trio.current_time()
        last = self.ice.last_valid
        # as far as each got (kept after close: "setup timeout" + ice "new" = no ICE at all)
        ice = "connected" if self.ice.nominated else ("checking" if self.addrs else "new")
        dtls = "connected" if self.srtp is not None else (
            "connecting" if self._dtls_addr else "new")
        profile = self.dtls.srtp_profile if self.srtp is not None else None
        return {
            "id": self.id,
            "remote_address": f"{self.addr[0]}:{self.addr[1]}" if self.addr else None,
            "transport": self.transport,
            "ice_restarts": self.ice_restarts,
            "client": self.client or None,
            "since": round(self.created_wall, 3),
            "state": "closed" if self.closed else ("connected" if self.live else "connecting"),
            "ice_state": ice,
            "dtls_state": dtls,
            "srtp_profile": profile.decode() if isinstance(profile, bytes) else profile,
            "setup_seconds": (None if self.connected_at is None
                              else round(self.connected_at - self.created, 3)),
            "closed_at": None if self.closed_wall is None else round(self.closed_wall, 3),
            "packets_sent": sum(t.packets for t in self.out.values()),
            "bytes_sent": sum(t.bytes for t in self.out.values()),
            "retransmitted": sum(t.retransmitted for t in self.out.values()),
            "send_dropped": sum(t.dropped for t in self.out.values()),
            "nacks": self.nacks,
            "plis": self.plis,
            "firs": self.firs,
            "keyframe_replays": self.keyframe_replays,
            "replayed_packets": self.replayed_packets,
            "rtx_sent": self.rtx_sent,
            "consent_age_seconds": None if last is None else round(now - last, 3),
            "tracks": {k: {"payload_type": t.payload_type, "ssrc": t.ssrc, "packets": t.packets}
                       for k, t in self.out.items()},
            "dropped": dict(self.dropped),
            "receiver_reports": {k: dict(v) for k, v in self.receiver_reports.items()},
            "close_reason": self.close_reason,
        }

    # -- input from the mux (synchronous) --------------------------------------------------

    def handle_stun(self, data: bytes, addr: tuple[str, int], now: float,
                    via: TcpConnection | None = None) -> bool:
        """A STUN message routed to us by ufrag, from ``addr`` over UDP or over the ICE-TCP
        connection ``via``. True when it was a valid check (answered). Raises ParseError
        on garbage."""
        if self.closed:
            return False
        resp = self.ice.handle(data, addr, now)
        if resp is None:
            return False
        if via is None:
            if addr not in self.addrs:
                self.addrs.add(addr)
                self.mux.route(addr, self)
            self.mux.send(resp, addr)
        else:
            self.tcp_paths[addr] = via
            via.send(resp)
        if self.ice.last_nominating and (addr != self.addr or via is not self.tcp):
            self.event("ice-connected" if self.addr is None else "ice-switched",
                       remote=f"{addr[0]}:{addr[1]}", transport="tcp" if via else "udp",
                       after=f"{now - self.created:.3f}s")
            native_before = self._viewer is not None
            self.addr = addr
            self.tcp = via
            self.transport = "tcp" if via is not None else "udp"
            if native_before and via is not None and not self._can_stream(via):
                self._leave_native()  # sendmmsg on the mux socket cannot carry ICE-TCP
            if self.srtp is not None and self._pending is None and self._replay_after is None:
                self._steady()  # the new path (and fast path or not) from the next packet
            else:
                self._bind_tracks()
        return True

    def tcp_closed(self, conn: TcpConnection) -> None:
        if self._stream is conn:
            self._stream = None  # it detached the C viewer before closing
        super().tcp_closed(conn)

    def _dtls_connected(self, now: float, addr: tuple[str, int]) -> None:
        self._connected(now)

    def handle_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """SRTCP from the viewer: receiver reports, NACK, PLI/FIR, BYE."""
        if self.srtp is None or self.closed:
            self.dropped["rtcp-before-dtls"] += 1
            return
        self.rtcp_bytes += len(data)
        try:
            plain = self.srtp.unprotect_rtcp(data)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return
        if not self.dtls.released:
            # valid SRTCP proves the viewer finished the handshake: it will never need our
            # last flight again, so OpenSSL's state (~80 KiB) can go
            self.dtls.release()
        try:
            packets = parse_rtcp(plain)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return
        for pkt in packets:
            if isinstance(pkt, Nack):
                self._on_nack(pkt, now)
            elif isinstance(pkt, Pli):
                self.plis += 1
                self._on_keyframe_request(now)
            elif isinstance(pkt, Fir):
                self.firs += 1
                self._on_keyframe_request(now)
            elif isinstance(pkt, ReceiverReport):
                for block in pkt.reports:
                    track = self._by_ssrc.get(block.ssrc)
                    if track is not None:  # only our SSRCs: the dict stays bounded
                        clock = self.source.state[track.kind].clock_rate or 90000
                        self.receiver_reports[track.kind] = {
                            "fraction_lost": round(block.fraction_lost / 256, 4),
                            "packets_lost": block.packets_lost,
                            "jitter_seconds": round(block.jitter / clock, 6),
                            "rtt_seconds": _rtt(block.lsr, block.dlsr, time.time()),
                        }
            elif isinstance(pkt, Bye):
                self.close("viewer sent BYE")
                return

    # -- input from the Source (synchronous, the hot path) --------------------------------

    def forward(self, pkt: SourcePacket) -> None:
        """Send one source packet to this viewer (rewrite, protect, send); the slow path,
        while the viewer is off the Source's fan-out (a burst queues, a replay waits)."""
        pending = self._pending
        if pending is not None:
            pending.append(pkt)
            return
        track = self.out.get(pkt.kind)
        if track is None:
            return
        tcp = self.tcp
        if tcp is not None and not tcp.admit(pkt.kind.startswith("video"), pkt.keyframe):
            track.dropped += 1  # a congested TCP viewer: skipping to the next keyframe
            return
        if (self._replay_after is not None and pkt.kind == self._video
                and pkt.ts != self._replay_after):
            self._start_replay(track, pkt)
            return
        self._send(track, pkt)

    def _send(self, track: OutTrack, pkt: SourcePacket, seq: int | None = None,
              ts: int | None = None) -> bool:
        """Send ``pkt`` as our ``seq``/``ts`` (default: its live numbering); False when it
        was not sent (counted in :attr:`dropped`)."""
        if seq is None:
            seq = pkt.seq + track.seq_delta
        if ts is None:
            ts = pkt.ts + track.ts_delta
        data = rewrite(pkt.data, track.payload_type, seq & 0xFFFF, ts & 0xFFFFFFFF, track.ssrc)
        return self._send_protected(track, data, "srtp-protect")

    def _send_protected(self, track: OutTrack, data: bytes, refused: str,
                        kind: int = MEDIA) -> bool:
        """Protect and send one ready RTP packet of ``track`` (``kind``: MEDIA counts in
        ``packets``/``bytes``, RETRANSMISSION and RTX in ``retransmitted``, RTX also in
        :attr:`rtx_sent`). An SRTP refusal counts in :attr:`dropped` as ``refused``, a
        datagram the kernel did not take in the track's ``dropped``. On the native fan-out
        the viewer's worker does it (after what was queued before); True then means queued.
        """
        viewer = self._viewer
        if viewer is not None:
            return bool(viewer.send(track.slot, data, kind, REFUSALS.index(refused)))
        try:
            out = self.srtp.protect(data)  # type: ignore[union-attr]
        except ParseError:
            self.dropped[refused] += 1
            return False
        if not self._transmit(out):
            track.dropped_py += 1
            return False
        if kind == MEDIA:
            track.packets_py += 1
            track.bytes_py += len(out)
        else:
            track.retransmitted_py += 1
            if kind == RTX:
                self._rtx_sent += 1
        return True

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """The Peer's timer task: DTLS retransmission, setup and consent timeouts, Sender
        Reports, the initial GOP burst. Returns when the Peer closes; cancellation closes it.
        """
        try:
            with trio.CancelScope() as self._scope:
                while not self.closed:
                    if self._pending is not None:
                        await self._send_burst()
                        continue
                    self._on_timer(trio.current_time())
                    if self.closed:
                        break
                    with trio.move_on_at(self._next_deadline()) as self._wait:
                        await trio.sleep_forever()
                    self._wait = None
        finally:
            self.close(self.close_reason or "cancelled")

    def close(self, reason: str = "closed") -> None:
        """Close this viewer: DTLS close_notify, stop media, forget routes. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.closed_wall = time.time()
        sent = sum(t.packets for t in self.out.values())
        self.event("closed", reason=repr(reason),
                   lived=f"{trio.current_time() - self.created:.1f}s",
                   connected=self.connected_at is not None, packets=sent,
                   bytes=sum(t.bytes for t in self.out.values()), nacks=self.nacks,
                   plis=self.plis, replays=self.keyframe_replays, rtx=self.rtx_sent,
                   dropped=dict(self.dropped) or "-")
        if self._viewer is not None:
            self._viewer.close()  # no RTP of ours after this returns, so none after the BYE
        self._stream = None
        for conn in list(self.tcp_paths.values()):
            conn.make_room_for_goodbye()  # the C viewer detached, stale media dropped
        if self.srtp is not None:
            self._send_bye()  # RTCP BYE: the viewer's receivers end their tracks at once
        if self.dtls.handshake_complete and not self.dtls.closed:
            self.dtls.close()  # close_notify (made at release time, if released): the
            self._flush_dtls()  # browser ends the session at once, not after ~30-40 s
        self._pending = None
        self._burst = []
        self._replay_after = None
        self.source.detach(self)
        self.mux.unregister(self)
        for conn in list(self.tcp_paths.values()):
            conn.finish()  # after the goodbye above was queued on it
        self.tcp_paths.clear()
        self.tcp = self._dtls_via = None
        if self._scope is not None:
            self._scope.cancel()

    # -- internals -----------------------------------------------------------------------

    def _connected(self, now: float) -> None:
        keys = self.dtls.srtp_keys()
        self.srtp = SrtpSession(keys)
        if self.addr is None:
            if self._dtls_via is not None:  # DTLS over ICE-TCP before any nomination
                self.addr, self.tcp = self._dtls_addr, self._dtls_via
            else:
                self.addr = self.ice.nominated or self._dtls_addr
            self.transport = "tcp" if self.tcp is not None else "udp"
        self._bind_tracks()
        self._go_native(keys)
        self.connected_at = now
        profile = self.dtls.srtp_profile
        self.event("dtls-connected", role="server",
                   srtp=profile.decode() if isinstance(profile, bytes) else profile,
                   remote=f"{self.addr[0]}:{self.addr[1]}" if self.addr else "-",
                   after=f"{now - self.created:.3f}s")
        self._next_sr = now
        video = self.source.state.get(self._video)
        track = self.out.get(self._video)
        if video is not None and track is not None and video.gop:
            # the first packets this viewer sees: their live numbering is fresh for it
            self._burst = [(p, p.seq + track.seq_delta, p.ts + track.ts_delta)
                           for p in video.gop]
            self._pending = []
            self.source.listeners.append(self)  # live packets queue while the GOP goes out
        else:
            self._steady()

    def _steady(self) -> None:
        """Join the Source's fast path: from now on it sends to us directly — the C viewer's
        tables when native, else ``Source.fanout`` (the Python loop). A viewer on ICE-TCP
        (non-native tracks) stays off both: the Source hands it every packet through
        :meth:`forward` (``Source.listeners``), which asks the connection's keyframe gate."""
        assert self.srtp is not None and self.addr is not None
        self._bind_tracks()
        viewer = self._viewer
        for track in self.out.values():
            if viewer is not None:
                viewer.set_track(track.slot, track.payload_type, track.ssrc,
                                 track.seq_delta & 0xFFFF, track.ts_delta & 0xFFFFFFFF)
                viewer.join(track.slot, self.source.tables[track.kind])  # type: ignore[attr-defined]
                continue
            fan = self.source.fanout.get(track.kind)
            if fan is None:
                continue
            if track.native_send and track not in fan:
                fan.append(track)
            elif not track.native_send and track in fan:
                fan.remove(track)
        if self.tcp is None or viewer is not None:
            if self in self.source.listeners:
                self.source.listeners.remove(self)
        elif self not in self.source.listeners:
            self.source.listeners.append(self)

    def _go_native(self, keys: SrtpKeys) -> None:
        """Put this viewer on the Source's native fan-out when there is one and every track's
        transport is the UDP mux socket: a C viewer with its own outbound RTP session (the
        keys of :attr:`srtp`, whose own outbound session then only protects our SRTCP)."""
        engine = getattr(self.source, "engine", None)
        tables = getattr(self.source, "tables", {})
        if engine is None or self.addr is None or not 0 < len(self.out) <= MAX_TRACKS:
            return
        if not all(t.kind in tables for t in self.out.values()):
            return
        tcp = self.tcp
        if tcp is not None:
            if not self._can_stream(tcp):
                return  # protect + the track's own sendto (the Python path)
            fd = -1
        else:
            if not all(t.native_send for t in self.out.values()):
                return
            fd = self.mux.fileno_for(self.addr)
            if fd < 0:
                return
        try:
            ctx = new_tx_context(keys)
        except pylibsrtp.Error:
            return  # the Python path reports the refusal per packet
        viewer = engine.viewer(ctx, *viewer_keys(keys))  # owns ctx: freed exactly once, by C
        if tcp is None:
            viewer.set_address(fd, self.addr)
        for slot, track in enumerate(self.out.values()):
            viewer.set_track(slot, track.payload_type, track.ssrc, track.seq_delta & 0xFFFF,
                             track.ts_delta & 0xFFFFFFFF)
            track.bind(viewer, slot)
        self._viewer = viewer
        self._viewer_ctx = ctx
        if tcp is not None:
            self._bind_tracks()  # the C viewer becomes the connection's writer

    @staticmethod
    def _can_stream(conn: TcpConnection) -> bool:
        """Whether a C viewer can write ``conn`` itself (an ICE-TCP connection, with the C
        fan-out's stream transport)."""
        return STREAMS and getattr(conn, "native_capable", False) and not conn.closed

    def _leave_native(self) -> None:
        """ICE moved this native viewer to a path ``sendmmsg`` on the mux socket cannot carry
        (an ICE-TCP connection): from now on the Python path sends for it. Its C viewer
        leaves the tables, the workers finish what was queued for it (``engine.sync``), the
        rollover counters of its RTP streams are carried into :attr:`srtp` (the packet index
        continues: no keystream is used twice, the viewer's SRTP keeps decrypting), its
        counters are folded into the tracks, and it is closed (its session freed by C)."""
        viewer = self._viewer
        if viewer is None or self.srtp is None:
            return
        if self._stream is not None:
            self._stream.detach()
            self._stream = None
        for track in self.out.values():
            viewer.leave(track.slot)
        self.source.engine.sync()  # type: ignore[attr-defined]
        _ = self.dropped  # fold the viewer's SRTP refusals into ours
        for track in self.out.values():
            for ssrc in (track.ssrc, track.rtx_ssrc):
                if not ssrc:
                    continue
                gcm = getattr(viewer, "gcm", False)  # an extension built before srtp_gcm.h
                roc = viewer.roc(ssrc) if gcm else stream_roc(self._viewer_ctx, ssrc)
                if roc:
                    carry_roc(self.srtp, ssrc, roc)
            packets, nbytes, dropped, retransmitted = viewer.counters(track.slot)[:4]
            track.packets_py += packets
            track.bytes_py += nbytes
            track.dropped_py += dropped
            track.retransmitted_py += retransmitted
            track.native = None
            track.slot = -1
        self._rtx_sent += viewer.rtx_sent
        viewer.close()
        self._viewer = None
        self._viewer_ctx = 0
        self.event("native-left", transport=self.transport)

    def _bind_tracks(self) -> None:
        """Point every track at the current path (once DTLS is up, and again after an ICE
        change): the mux socket for ``addr`` (``native_send``), or the selected ICE-TCP
        connection (not native: ``fd`` -1, the connection's ``sendto``); the Python path's
        ``protect``; and the C viewer's address when native."""
        addr = self.addr
        if addr is None:
            return
        tcp = self.tcp
        if tcp is None:
            sendto = self.mux.sendto_for(addr) if self.srtp is not None else _not_sending
            fd = self.mux.fileno_for(addr) if self.srtp is not None else -1
        else:
            sendto, fd = tcp.sendto, -1
        for track in self.out.values():
            track.addr = addr
            track.native_send = tcp is None
            track.sendto = sendto
            track.fd = fd
            if self.srtp is not None:
                track.protect = self.srtp.raw_protect
                track.srtp_ctx = self.srtp.context_address
        viewer = self._viewer
        if viewer is None:
            return
        if tcp is not None and self._can_stream(tcp):
            if self._stream is not tcp:  # UDP -> TCP, or another connection
                if self._stream is not None:
                    self._stream.detach()
                self._stream = tcp if tcp.attach(viewer) else None
            return
        if self._stream is not None:  # TCP -> UDP: the same C viewer, another transport
            self._stream.detach()
            self._stream = None
        if tcp is None:
            viewer.set_address(fd, addr)

    def _transmit(self, data: bytes) -> bool:
        """Send one packet on the selected path (ICE-TCP connection or UDP to ``addr``)."""
        if self.tcp is not None:
            return self.tcp.send(data)
        if self.addr is None:
            return False
        return self.mux.send(data, self.addr)

    def _leave_fanout(self) -> None:
        """Take this viewer off the Source's fast path: packets come through :meth:`forward`."""
        for track in self.out.values():
            if self._viewer is not None:
                self._viewer.leave(track.slot)  # in order: the live packets queued before stay
                continue
            fan = self.source.fanout.get(track.kind)
            if fan is not None and track in fan:
                fan.remove(track)
        if self not in self.source.listeners:
            self.source.listeners.append(self)

    def _start_replay(self, track: OutTrack, pkt: SourcePacket) -> None:
        """At a frame boundary (``pkt`` starts a frame) after a PLI: queue the cached GOP as
        new packets of our stream — the next sequence numbers, timestamps just after the
        last frame sent (so the viewer's decoder takes them as new frames; the timestamp
        offset grows by that many ticks) — then ``pkt`` and the live stream after them."""
        self._replay_after = None
        video = self.source.state[self._video]
        frames = [p for p in video.gop if p.ts != pkt.ts]
        if pkt.keyframe or not frames or not frames[0].keyframe:
            self._send(track, pkt)  # a keyframe comes now anyway, or there is nothing to send
            self._steady()
            return
        seqmap = self._seqmaps[self._video]
        base = frames[-1].ts + track.ts_delta
        items: list[tuple[SourcePacket, int]] = []
        frame = 0
        last_ts: int | None = None
        for p in frames:
            if p.ts != last_ts:
                frame += 1
                last_ts = p.ts
            items.append((p, (base + frame) & 0xFFFFFFFF))
        seqs = seqmap.insert(pkt.seq, items, ts_shift=frame, now=trio.current_time())
        track.seq_delta = seqmap.delta
        track.ts_delta = seqmap.ts_delta
        self._burst = [(p, seq, ts) for (p, ts), seq in zip(items, seqs, strict=True)]
        self.keyframe_replays += 1
        self.replayed_packets += len(items)
        self._pending = [pkt]
        self._wake()

    async def _send_burst(self) -> None:
        """Send the burst in small paced chunks, then whatever queued meanwhile."""
        track = self.out[self._video]
        waited = 0.0
        while self._burst and not self.closed:
            tcp = self.tcp
            if tcp is not None and not tcp.fits(tcp.limit // 2):
                # ICE-TCP: pace the burst to what the connection drains; a connection that
                # drains nothing for TCP_BURST_WAIT gives up the burst (the gate then waits
                # for the next keyframe), so live packets queued meanwhile stay bounded
                if waited >= TCP_BURST_WAIT:
                    self._burst = []
                    tcp.overflowed()
                    self.dropped["tcp-burst-abandoned"] += 1
                    break
                await trio.sleep(BURST_PAUSE)
                waited += BURST_PAUSE
                continue
            chunk, self._burst = self._burst[:BURST_PACKETS], self._burst[BURST_PACKETS:]
            for pkt, seq, ts in chunk:
                self._send(track, pkt, seq, ts)
            await trio.sleep(BURST_PAUSE)
        queued, self._pending = self._pending or [], None
        if self.closed:
            return
        for pkt in queued:
            self.forward(pkt)
        self._steady()

    def _on_nack(self, nack: Nack, now: float) -> None:
        self.nacks += 1
        track = self._by_ssrc.get(nack.media_ssrc)
        if track is None:
            self.dropped["nack-unknown-ssrc"] += 1
            return
        state = self.source.state[track.kind]
        seqmap = self._seqmaps[track.kind]

        def history(norm: int) -> SourcePacket | None:
            return state.lookup(norm, now)

        for seq in nack.lost:
            found = seqmap.lookup(seq & 0xFFFF, history)
            if found is None:
                self.dropped["nack-miss"] += 1
                repair = getattr(self.source, "request_repair", None)
                if repair is not None:  # a producer that takes NACKs (WHIP) may resend it
                    repair(track.kind, (seq - track.seq_delta) & 0xFFFF, now)
                continue
            pkt, ts = found
            if track.rtx_payload_type >= 0:
                self._send_rtx(track, pkt, seq & 0xFFFF, ts)
            else:
                # the original number again: libsrtp's sender allows a repeat only within
                # its 128-packet window; older repairs need RTX
                data = rewrite(pkt.data, track.payload_type, seq & 0xFFFF, ts, track.ssrc)
                self._send_protected(track, data, "nack-too-old", RETRANSMISSION)

    def _send_rtx(self, track: OutTrack, pkt: SourcePacket, seq: int, ts: int) -> None:
        """RFC 4588: the repair on the RTX stream (own SSRC and sequence numbers), the
        original sequence number in front of the payload."""
        try:
            hdr = parse_rtp(pkt.data)
        except ParseError:
            self.dropped["nack-unparsable"] += 1
            return
        rtx_seq = track.rtx_seq
        track.rtx_seq = (rtx_seq + 1) & 0xFFFF
        head = rewrite(pkt.data[:hdr.header_size], track.rtx_payload_type, rtx_seq, ts,
                       track.rtx_ssrc)
        data = head + seq.to_bytes(2, "big") + pkt.data[hdr.header_size:]
        self._send_protected(track, data, "rtx-protect", RTX)

    def _on_keyframe_request(self, now: float) -> None:
        """PLI/FIR: the encoder cannot be asked, so the cached GOP is replayed, as new
        packets, at the next frame boundary (:meth:`_start_replay`)."""
        track = self.out.get(self._video)
        video = self.source.state.get(self._video)
        request = getattr(self.source, "request_keyframe", None)
        if request is not None and track is not None:
            request(now)  # a producer that takes PLI (WHIP) sends a fresh keyframe too
        if track is None or video is None or not video.gop or video.last_seq < 0:
            return
        if self._pending is not None or self._replay_after is not None:
            return  # a burst (which starts with a keyframe) is on its way already
        if now - self._last_pli_answer < PLI_MIN_INTERVAL:
            return
        self._last_pli_answer = now
        self._replay_after = video.last_ts
        self._leave_fanout()

    def _on_timer(self, now: float) -> None:
        if self.srtp is None:
            if self.dtls.next_timeout() is not None and now >= self.dtls.next_timeout():  # type: ignore[operator]
                self.dtls.handle_timeout(now)
                self._flush_dtls()
            if now - self.created > self.setup_timeout:
                self.close("setup timeout (no ICE/DTLS)")
                return
        last = self.ice.last_valid if self.ice.last_valid is not None else self.created
        if now - last > self.consent_timeout:
            self.close("consent-expired")
            return
        if (self.connected_at is not None and not self.dtls.released
                and now - self.connected_at > DTLS_RELEASE_AFTER):
            self.dtls.release()  # the handshake is long over: free OpenSSL's state
        if self.srtp is not None and now >= self._next_sr:
            self._send_sender_reports(now)
            self._next_sr = now + SR_INTERVAL
            self._log_progress(now)

    def _next_deadline(self) -> float:
        last = self.ice.last_valid if self.ice.last_valid is not None else self.created
        deadline = last + self.consent_timeout + 0.01
        if self.srtp is None:
            deadline = min(deadline, self.created + self.setup_timeout + 0.01)
            dtls_timeout = self.dtls.next_timeout()
            if dtls_timeout is not None:
                deadline = min(deadline, dtls_timeout)
        else:
            deadline = min(deadline, self._next_sr)
        return deadline

    def _log_progress(self, now: float) -> None:
        """First media sent; PLI/NACK bursts since the last such line (checked each SR)."""
        if self.first_media_at is None and any(t.packets for t in self.out.values()):
            self.first_media_at = now
            after = now - (self.connected_at or self.created)
            self.event("first-media", within=f"{after:.1f}s",
                       packets=sum(t.packets for t in self.out.values()))
        last, nacks, plis, misses = self._feedback_logged
        miss = self.dropped["nack-miss"] + self.dropped["nack-too-old"]
        if (now - last >= FEEDBACK_LOG_INTERVAL
                and (self.nacks, self.plis, miss) != (nacks, plis, misses)):
            self.event("feedback", nacks=self.nacks - nacks, plis=self.plis - plis,
                       unrepaired=miss - misses, replays=self.keyframe_replays,
                       rtx=self.rtx_sent, seconds=f"{now - last:.0f}" if last else "-")
            self._feedback_logged = (now, self.nacks, self.plis, miss)

    def _send_sender_reports(self, now: float) -> None:
        wall = time.time()
        for kind, track in self.out.items():
            state = self.source.state[kind]
            if state.last_seq < 0:
                continue
            rtp_ts = (state.rtp_time(now) + track.ts_delta) & 0xFFFFFFFF
            report = build_sr(track.ssrc, wall, rtp_ts, track.packets, track.bytes)
            report += build_sdes_cname(track.ssrc, self.cname)
            try:
                out = self.srtp.protect_rtcp(report)  # type: ignore[union-attr]
            except ParseError as exc:
                self.dropped[exc.reason] += 1
                continue
            self._transmit(out)

    def _send_bye(self) -> None:
        """One SRTCP compound per track: SR (or RR before any media), SDES CNAME and a BYE
        for the track's SSRCs (and its RTX SSRC). Synchronous, non-blocking sends."""
        wall = time.time()
        now = trio.current_time()
        for kind, track in self.out.items():
            state = self.source.state.get(kind)
            if state is not None and state.last_seq >= 0:
                rtp_ts = (state.rtp_time(now) + track.ts_delta) & 0xFFFFFFFF
                report = build_sr(track.ssrc, wall, rtp_ts, track.packets, track.bytes)
            else:
                report = build_rr(track.ssrc)
            ssrcs = [track.ssrc] + ([track.rtx_ssrc] if track.rtx_payload_type >= 0 else [])
            report += build_sdes_cname(track.ssrc, self.cname) + build_bye(ssrcs)
            try:
                out = self.srtp.protect_rtcp(report)  # type: ignore[union-attr]
            except ParseError as exc:
                self.dropped[exc.reason] += 1
                continue
            self._transmit(out)
