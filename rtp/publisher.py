"""Publisher: one WHIP publisher (a browser, OBS, FFmpeg's ``-f whip``) feeding a Source.

The receiving counterpart of :class:`rtp.peer.Peer`, glued from the same sans-IO cores:
ICE-lite (:class:`~rtp.stun.IceLite`), DTLS-SRTP in the role the answer chose
(:class:`~rtp.dtls.DtlsEndpoint`, ``"client"`` for a publisher that offered
``setup:passive``: we then send the ClientHello once its first connectivity check arrived)
and SRTP. The :class:`~rtp.mux.UdpMux` hands it the publisher's datagrams (``handle_stun``,
``handle_dtls``, ``handle_rtcp``, ``handle_rtp``); decrypted media goes, synchronously, into
the channel's :class:`~rtp.source.Source` (``Source.on_datagram``), which fans it out to the
viewers exactly as FFmpeg-fed media. RTX (RFC 4588) repairs are unwrapped back into their
original packets (padding-only probes are dropped).

Feedback toward the publisher (SRTCP, sent from our own SSRC):

* a Receiver Report per media SSRC and a REMB (``max_bitrate``) about every second, so a
  browser ramps up to its configured bitrate instead of staying at its start rate;
* a generic NACK as soon as a sequence gap shows (and for the viewers' NACKs that the
  Source's history could not answer, :meth:`request_repair`);
* a PLI when a viewer asks for a keyframe (:meth:`request_keyframe`), at most one per
  :data:`PLI_INTERVAL` seconds.

Transport (issue 21's mechanisms, shared with :class:`rtp.peer.Peer`): the publisher's path
is UDP through the mux or an ICE-TCP connection (:mod:`rtp.tcp`: ``via=`` on
``handle_stun``/``handle_dtls``, media frames to ``handle_rtp``); our RTCP and DTLS go back on
whichever path the latest nominating check came over. :meth:`restart_ice` (WHIP ICE
restart over PATCH) swaps the local ICE credentials (the mux's username demux follows,
:meth:`rtp.mux.UdpMux.rename`) and keeps DTLS/SRTP, the Source and its viewers; the
publisher's next nominating check with the new credentials moves the path.

It closes itself when setup (ICE + DTLS) does not finish within ``setup_timeout``, when no
RTP arrived for ``media_timeout`` seconds, when consent expires (no valid STUN check for
``consent_timeout`` seconds — only for a publisher that refreshes consent at all, see
:meth:`_on_timer`), on DTLS failure or close_notify, or on an RTCP BYE.

Cancellation: :meth:`run` (its timer task) ends when it closes; cancelling it closes it.
:meth:`close` is idempotent and tells ``on_close``.
"""

from __future__ import annotations

import collections
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .dtls import Certificate, DtlsEndpoint
from .errors import DtlsError, ParseError
from .ice_dtls import IceDtlsPath
from .packet import parse_rtp
from .rtcp import PSFB, Bye, ReportBlock, SenderReport, build_nack, build_pli, build_rr, parse_rtcp
from .srtp import SrtpSession
from .stun import IceLite

if TYPE_CHECKING:
    from .mux import UdpMux
    from .source import Source
    from .tcp import TcpConnection
    from .whip_sdp import IngestTrack

__all__ = ["Publisher", "build_remb"]

log = logging.getLogger("rtp.session")

RTCP_INTERVAL = 1.0
PLI_INTERVAL = 0.5
#: a sequence jump up to this many packets is NACKed; a longer one is a restart/burst loss
MAX_NACK_GAP = 200
#: at most this many sequence numbers are NACKed per gap (the newest)
MAX_NACK_PER_GAP = 64
REPAIR_REPEAT = 0.1  # a viewer's repair request for the same packet is passed on once per this
REPAIRS_KEPT = 512
#: inbound SRTP replay window: retransmissions may come further back than libsrtp's 128
RX_WINDOW = 4096
DTLS_RELEASE_AFTER = 10.0
CLIENT_HELLO_DELAY = 0.05
CLIENT_HELLO_REPEAT = 0.1


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """An RTCP REMB (draft-alvestrand-rmcat-remb): receiver estimated max bitrate."""
    exp = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    fci = b"REMB" + struct.pack("!I", (len(ssrcs) << 24) | (exp << 18) | mantissa)
    fci += b"".join(struct.pack("!I", s & 0xFFFFFFFF) for s in ssrcs)
    body = struct.pack("!II", sender_ssrc, 0) + fci
    return struct.pack("!BBH", 0x80 | 15, PSFB, len(body) // 4) + body


@dataclass
class _Stream:
    """Receive statistics of one media SSRC (RFC 3550 A.1/A.3/A.8)."""

    kind: str
    ssrc: int
    clock_rate: int
    base_seq: int
    max_seq: int
    cycles: int = 0
    received: int = 0
    bytes: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    transit: float | None = None
    lsr: int = 0
    lsr_at: float = 0.0
    frames: int = 0

    def update(self, seq: int, ts: int, arrival: float) -> int:
        """Account one packet; return how far ahead of the highest it is (<= 0: late)."""
        ahead = (seq - self.max_seq) & 0xFFFF
        if ahead and ahead < 0x8000:
            if seq < self.max_seq:
                self.cycles += 1 << 16
            self.max_seq = seq
        elif ahead == 0:
            ahead = 0
        else:
            ahead -= 0x10000
        self.received += 1
        transit = arrival * self.clock_rate - ts
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < self.clock_rate * 10:  # not a wrap or a restart
                self.jitter += (d - self.jitter) / 16
        self.transit = transit
        return ahead

    def block(self, now: float) -> ReportBlock:
        extended = self.cycles + self.max_seq
        expected = extended - self.base_seq + 1
        lost = expected - self.received
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (
            (lost_interval << 8) // expected_interval)
        dlsr = int((now - self.lsr_at) * 65536) if self.lsr else 0
        return ReportBlock(self.ssrc, min(255, fraction), lost, extended & 0xFFFFFFFF,
                           int(self.jitter), self.lsr, dlsr & 0xFFFFFFFF)


class Publisher(IceDtlsPath):
    """One WHIP publisher (see the module docstring). Created by the WHIP subsystem.

    Args:
        session_id: the secret session id (WHIP resource).
        source: the channel's Source (made with ``sockets=False``).
        tracks: the tracks the answer took, by kind (``rtp.whip_sdp.choose_tracks``).
        dtls_role: ``"server"`` or ``"client"`` (``PublishAnswer.dtls_role``).
        max_bitrate: the REMB we send (bit/s).
        on_close: told (synchronously) when the publisher closed.
    """

    def __init__(self, *, session_id: str, source: Source, mux: UdpMux,
                 certificate: Certificate, remote_fingerprint: str, dtls_role: str,
                 ice_ufrag: str, ice_pwd: str, remote_ufrag: str,
                 tracks: dict[str, IngestTrack], consent_timeout: float = 30.0,
                 setup_timeout: float = 15.0, media_timeout: float = 10.0,
                 max_bitrate: int = 6_000_000, client: str = "",
                 on_close: Callable[[Publisher], None] | None = None) -> None:
        self.id = session_id
        self.source = source
        self.mux = mux
        self.client = client
        self.ice = IceLite(ice_ufrag, ice_pwd, remote_ufrag)
        role = "client" if dtls_role == "client" else "server"
        self.dtls = DtlsEndpoint(certificate, remote_fingerprint, role)  # type: ignore[arg-type]
        self.dtls_role = role
        self.srtp: SrtpSession | None = None
        self.tracks = tracks
        #: payload type -> (kind, is_rtx)
        self._by_pt: dict[int, tuple[str, bool]] = {}
        for kind, t in tracks.items():
            self._by_pt[t.codec.payload_type] = (kind, False)
            if t.rtx_payload_type is not None:
                self._by_pt[t.rtx_payload_type] = (kind, True)
        self.streams: dict[int, _Stream] = {}
        self._media_ssrc: dict[str, int] = {}
        self.consent_timeout = consent_timeout
        self.setup_timeout = setup_timeout
        self.media_timeout = media_timeout
        self.max_bitrate = max_bitrate
        self.on_close = on_close
        self.ssrc = secrets.randbits(32) or 1  # ours, for the RTCP we send
        self.addr: tuple[str, int] | None = None
        self.addrs: set[tuple[str, int]] = set()
        #: ICE-TCP connections that passed a check, by remote address; ``tcp`` carries our
        #: RTCP when the latest nominating check came over it (None: UDP)
        self.tcp_paths: dict[tuple[str, int], TcpConnection] = {}
        self.tcp: TcpConnection | None = None
        self._dtls_via: TcpConnection | None = None
        self.ice_restarts = 0
        self.created = trio.current_time()
        self.created_wall = time.time()
        self.connected_at: float | None = None
        self.last_rtp: float | None = None
        self.stun_checks = 0
        self.closed = False
        self.close_reason: str | None = None
        self.dropped: collections.Counter[str] = collections.Counter()
        self.packets = 0
        self.bytes = 0
        self.rtx_received = 0
        self.nacks_sent = 0
        self.plis_sent = 0
        self.rtcp_bytes = 0
        self._dtls_addr: tuple[str, int] | None = None
        self._hello_at: float | None = None  # client role: when to send the ClientHello
        self._hello: list[bytes] | None = None  # ... and the flight, to send it twice
        self._dtls_heard = False
        self._next_rtcp = 0.0
        self._last_pli = -1e9
        self._repairs: collections.OrderedDict[tuple[int, int], float] = collections.OrderedDict()
        self._rate: tuple[float, int, float] = (self.created, 0, 0.0)  # (t, bytes, bit/s)
        self._scope: trio.CancelScope | None = None
        self._wait: trio.CancelScope | None = None
        self.event("publish", client=client or "-", role=role,
                   tracks=",".join(f"{k}:{t.codec.rtpmap()}" + ("+rtx" if t.rtx_payload_type
                                                               is not None else "")
                                   for k, t in tracks.items()))

    def event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        """One structured line (``whip <event> session=… source=… k=v …``)."""
        if log.isEnabledFor(level):
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            log.log(level, "whip %s session=%s source=%s %s", name, self.id[:8],
                    self.source.id, text)

    # -- state ---------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.srtp is not None and not self.closed

    def bitrate(self, now: float | None = None) -> float:
        """Received media bit/s, averaged over the last second or so."""
        now = trio.current_time() if now is None else now
        t, size, rate = self._rate
        if now - t >= 1.0:
            rate = (self.bytes - size) * 8 / (now - t)
            self._rate = (now, self.bytes, rate)
        return rate

    def stats(self) -> dict[str, object]:
        now = trio.current_time()
        return {
            "id": self.id,
            "remote_address": f"{self.addr[0]}:{self.addr[1]}" if self.addr else None,
            "client": self.client or None,
            "since": round(self.created_wall, 3),
            "state": "closed" if self.closed else ("connected" if self.live else "connecting"),
            "dtls_role": self.dtls_role,
            "transport": None if self.addr is None else ("tcp" if self.tcp else "udp"),
            "ice_restarts": self.ice_restarts,
            "codecs": {k: t.codec.rtpmap() for k, t in self.tracks.items()},
            "bitrate_kbit": round(self.bitrate(now) / 1000, 1),
            "packets": self.packets,
            "bytes": self.bytes,
            "lost": sum(max(0, s.cycles + s.max_seq - s.base_seq + 1 - s.received)
                        for s in self.streams.values()),
            "rtx_received": self.rtx_received,
            "nacks_sent": self.nacks_sent,
            "plis_sent": self.plis_sent,
            "last_rtp_age_seconds": None if self.last_rtp is None
            else round(now - self.last_rtp, 3),
            "dropped": dict(self.dropped),
            "close_reason": self.close_reason,
        }

    # -- input from the mux (synchronous) --------------------------------------------------

    def handle_stun(self, data: bytes, addr: tuple[str, int], now: float,
                    via: TcpConnection | None = None) -> bool:
        """A STUN message routed to us by ufrag, from ``addr`` over UDP or over the ICE-TCP
        connection ``via``. True when it was a valid check (answered)."""
        if self.closed:
            return False
        resp = self.ice.handle(data, addr, now)
        if resp is None:
            return False
        self.stun_checks += 1
        if via is None:
            if addr not in self.addrs:
                self.addrs.add(addr)
                self.mux.route(addr, self)
            self.mux.send(resp, addr)
        else:
            self.tcp_paths[addr] = via
            via.send(resp)
        if self.addr is None or (self.ice.last_nominating
                                 and (addr != self.addr or via is not self.tcp)):
            self.event("ice-connected" if self.addr is None else "ice-switched",
                       remote=f"{addr[0]}:{addr[1]}", transport="tcp" if via else "udp",
                       after=f"{now - self.created:.3f}s")
            self.addr, self.tcp = addr, via
        if self.dtls_role == "client" and self._dtls_addr is None:
            # the ClientHello goes to the checked address, a moment after our response: a
            # hello that arrives before the publisher saw ICE complete is dropped by it, and
            # OpenSSL's first retransmission comes only after a second
            self._dtls_addr, self._dtls_via = self.addr, self.tcp
            self._hello_at = now + CLIENT_HELLO_DELAY
            self._wake()
        return True

    def _dtls_connected(self, now: float, addr: tuple[str, int]) -> None:
        self.srtp = SrtpSession(self.dtls.srtp_keys(), rx_window=RX_WINDOW)
        if self.addr is None:
            self.addr = addr
        self.connected_at = now
        self._next_rtcp = now + 0.2
        profile = self.dtls.srtp_profile
        self.event("dtls-connected", role=self.dtls_role,
                   srtp=profile.decode() if isinstance(profile, bytes) else profile,
                   after=f"{now - self.created:.3f}s")

    def handle_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self.srtp is None or self.closed:
            self.dropped["rtcp-before-dtls"] += 1
            return
        self.rtcp_bytes += len(data)
        try:
            packets = parse_rtcp(self.srtp.unprotect_rtcp(data))
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return
        for pkt in packets:
            if isinstance(pkt, SenderReport):
                stream = self.streams.get(pkt.ssrc)
                if stream is not None:
                    stream.lsr = (pkt.ntp_timestamp >> 16) & 0xFFFFFFFF
                    stream.lsr_at = now
            elif isinstance(pkt, Bye):
                if any(s in self.streams for s in pkt.ssrcs):
                    self.close("publisher sent BYE")
                    return

    def handle_rtp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """SRTP media from the publisher: decrypt, unwrap RTX, account, NACK gaps, feed."""
        if self.srtp is None or self.closed:
            self.dropped["rtp-before-dtls"] += 1
            return
        try:
            plain = self.srtp.unprotect(data)
            hdr = parse_rtp(plain)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return
        found = self._by_pt.get(hdr.payload_type)
        if found is None:
            self.dropped["unknown-payload-type"] += 1
            return
        kind, rtx = found
        if rtx:
            media_ssrc = self._media_ssrc.get(kind)
            end = len(plain) - hdr.padding
            if media_ssrc is None or end - hdr.header_size < 3:
                self.dropped["rtx-padding" if media_ssrc is not None else "rtx-early"] += 1
                return
            osn = (plain[hdr.header_size] << 8) | plain[hdr.header_size + 1]
            head = bytearray(plain[:hdr.header_size])
            head[0] &= 0xDF  # the padding (if any) is not copied
            head[1] = (head[1] & 0x80) | self.tracks[kind].codec.payload_type
            struct.pack_into("!H", head, 2, osn)
            struct.pack_into("!I", head, 8, media_ssrc)
            plain = bytes(head) + plain[hdr.header_size + 2:end]
            seq, ssrc = osn, media_ssrc
            self.rtx_received += 1
        else:
            seq, ssrc = hdr.sequence, hdr.ssrc
        stream = self.streams.get(ssrc)
        if stream is None:
            if rtx:
                return
            if kind in self._media_ssrc:  # a new SSRC for this kind: the encoder restarted
                self.streams.pop(self._media_ssrc[kind], None)
            clock = self.tracks[kind].codec.clock_rate or 90000
            stream = self.streams[ssrc] = _Stream(kind, ssrc, clock, seq, seq)
            self._media_ssrc[kind] = ssrc
            ahead = 0
            stream.received += 1
        else:
            ahead = stream.update(seq, hdr.timestamp, now)
        if ahead > 1 and not rtx:
            self._nack_gap(stream, seq, ahead)
        self.packets += 1
        self.bytes += len(plain)
        stream.bytes += len(plain)
        self.last_rtp = now
        if not self.dtls.released and self.connected_at is not None:
            self.dtls.release()  # media flows: the handshake is over for both sides
        self.source.on_datagram(kind, plain, now)

    # -- feedback toward the publisher (the Source's upstream) ---------------------------------

    def request_keyframe(self, now: float) -> None:
        """A viewer wants a keyframe: PLI, at most one per :data:`PLI_INTERVAL` seconds."""
        ssrc = self._media_ssrc.get("video")
        if ssrc is None or self.srtp is None or now - self._last_pli < PLI_INTERVAL:
            return
        self._last_pli = now
        if self._send_rtcp(build_pli(self.ssrc, ssrc)):
            self.plis_sent += 1

    def request_repair(self, kind: str, ssrc: int, seq: int, now: float) -> None:
        """A viewer NACKed a packet the Source's history misses: NACK it upstream (once per
        :data:`REPAIR_REPEAT` seconds per packet)."""
        if self.srtp is None or ssrc not in self.streams:
            return
        key = (ssrc, seq)
        last = self._repairs.get(key)
        if last is not None and now - last < REPAIR_REPEAT:
            return
        self._repairs[key] = now
        self._repairs.move_to_end(key)
        while len(self._repairs) > REPAIRS_KEPT:
            self._repairs.popitem(last=False)
        if self._send_rtcp(build_nack(self.ssrc, ssrc, [seq])):
            self.nacks_sent += 1

    def _nack_gap(self, stream: _Stream, seq: int, ahead: int) -> None:
        if ahead > MAX_NACK_GAP:
            return
        missing = [(seq - i) & 0xFFFF for i in range(1, min(ahead, MAX_NACK_PER_GAP + 1))]
        if missing and self._send_rtcp(build_nack(self.ssrc, stream.ssrc, missing)):
            self.nacks_sent += 1

    def _send_rtcp(self, packet: bytes) -> bool:
        if self.srtp is None or self.addr is None or self.closed:
            return False
        try:
            out = self.srtp.protect_rtcp(packet)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return False
        if self.tcp is not None:
            return self.tcp.send(out)
        return self.mux.send(out, self.addr)

    def _send_reports(self, now: float) -> None:
        if not self.streams:
            return
        blocks = [s.block(now) for s in list(self.streams.values())[:31]]
        report = build_rr(self.ssrc, blocks)
        video = self._media_ssrc.get("video")
        if video is not None and self.max_bitrate > 0:
            report += build_remb(self.ssrc, self.max_bitrate, [video])
        self._send_rtcp(report)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """The timer task (DTLS retransmission, timeouts, reports). Ends when closed."""
        try:
            with trio.CancelScope() as self._scope:
                while not self.closed:
                    self._on_timer(trio.current_time())
                    if self.closed:
                        break
                    with trio.move_on_at(self._next_deadline()) as self._wait:
                        await trio.sleep_forever()
                    self._wait = None
        finally:
            self.close(self.close_reason or "cancelled")

    def close(self, reason: str = "closed") -> None:
        """Stop: DTLS close_notify, forget routes, tell ``on_close``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.event("closed", reason=repr(reason),
                   lived=f"{trio.current_time() - self.created:.1f}s",
                   connected=self.connected_at is not None, packets=self.packets,
                   bytes=self.bytes, nacks=self.nacks_sent, plis=self.plis_sent,
                   stun_checks=self.stun_checks,
                   dropped=dict(self.dropped) or "-")
        if self.dtls.handshake_complete and not self.dtls.closed:
            self.dtls.close()
            self._flush_dtls()
        self.mux.unregister(self)
        for conn in list(self.tcp_paths.values()):
            conn.finish()  # after the close_notify above was queued on it
        self.tcp_paths.clear()
        self.tcp = self._dtls_via = None
        if self.source.upstream is self:
            self.source.upstream = None
        if self.on_close is not None:
            self.on_close(self)
        if self._scope is not None:
            self._scope.cancel()

    def _on_timer(self, now: float) -> None:
        if self._hello_at is not None and now >= self._hello_at:
            if self._hello is None:
                self.dtls.start(now)
                self._hello = self.dtls.datagrams_to_send()
                self._hello_at = now + CLIENT_HELLO_REPEAT
            else:
                # FFmpeg's muxer drops the first ClientHello (it arrives while it finishes
                # ICE): send the same flight again at once, not after OpenSSL's 1 s timer
                self._hello_at = None
            if self._dtls_addr is not None and not self._dtls_heard:
                for datagram in self._hello:
                    self._send_dtls(datagram)
        if self.srtp is None:
            deadline = self.dtls.next_timeout()
            if deadline is not None and now >= deadline:
                try:
                    self.dtls.handle_timeout(now)
                except DtlsError as exc:
                    self.close(f"dtls: {exc}")
                    return
                self._flush_dtls()
            if now - self.created > self.setup_timeout:
                self.close("setup timeout (no ICE/DTLS)")
                return
        else:
            since = self.last_rtp if self.last_rtp is not None else self.connected_at
            if since is not None and now - since > self.media_timeout:
                self.close(f"no RTP for {self.media_timeout:g} s")
                return
        # consent freshness (RFC 7675) binds publishers that refresh it: one that sent a
        # single check (FFmpeg's muxer checks once) is bound by the media timeout instead
        last = self.ice.last_valid
        if last is not None and self.stun_checks > 1 and now - last > self.consent_timeout:
            self.close("consent expired")
            return
        if (self.connected_at is not None and not self.dtls.released
                and now - self.connected_at > DTLS_RELEASE_AFTER):
            self.dtls.release()
        if self.srtp is not None and now >= self._next_rtcp:
            self._send_reports(now)
            self._next_rtcp = now + RTCP_INTERVAL

    def _next_deadline(self) -> float:
        if self.srtp is None:
            deadline = self.created + self.setup_timeout + 0.01
            dtls_timeout = self.dtls.next_timeout()
            if dtls_timeout is not None:
                deadline = min(deadline, dtls_timeout)
            if self._hello_at is not None:
                deadline = min(deadline, self._hello_at)
            return deadline
        deadline = self._next_rtcp
        since = self.last_rtp if self.last_rtp is not None else self.connected_at
        if since is not None:
            deadline = min(deadline, since + self.media_timeout + 0.01)
        return deadline
