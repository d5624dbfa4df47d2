"""Load viewers: many lightweight WebRTC receivers in one trio process.

Each :class:`Viewer` is a real WebRTC endpoint built from the ``rtp`` sans-IO cores: it makes
(or answers) the SDP, runs ICE (controlling with USE-CANDIDATE when it offered, controlled when
it answered Janus's offer, and it always answers the server's own Binding requests, as full
ICE servers send them), DTLS as client or server (whatever the answer's ``a=setup`` asks),
SRTP/SRTCP, consent checks every few seconds, one receiver report per second per media
SSRC, and generic NACKs for holes in the video sequence — like a browser.

Cost model (so that the server, not the load generator, is the bottleneck):

* Media is read by one **data thread** that polls every viewer socket with one ``epoll``
  and drains each ready socket with ``recv_into`` into one buffer. RTP is counted from the
  cleartext RTP header (SSRC, sequence number, timestamp): received, lost, duplicates,
  sequence gaps, arrival spacing. Only a **sample** is unprotected (every video packet
  until the first keyframe, then one packet in ``sample_every``) to prove the SRTP is
  genuine (``auth_fail`` counts failures). **Probe viewers** (the first few) read with
  ``recvmsg`` and kernel receive timestamps (``SO_TIMESTAMPNS``) and unprotect everything,
  so their packets can be joined with the tee's send times (forwarding latency).
* RTCP (RR, NACK) is built and protected in the data thread as well, so the SRTP session
  is only ever used by one thread. STUN and DTLS datagrams (rare) are passed to the trio
  side, which owns ICE, DTLS and consent timers.
"""

from __future__ import annotations

import collections
import os
import random
import secrets
import select
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import trio
from aioice import stun

from rtp.dtls import Certificate, DtlsEndpoint
from rtp.errors import DtlsError, ParseError
from rtp.srtp import SrtpSession
from rtp.stun import check_binding_response

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
NTP_EPOCH = 2208988800
#: Video packets a viewer keeps while its SRTP keys are not there yet (a 2 s GOP at 2 Mbit/s
#: is about 420 packets of 1200 bytes).
EARLY_PACKETS = 600

# --- small SDP helpers (client side) ---------------------------------------------------------


@dataclass
class RemoteSection:
    kind: str
    mid: str
    codecs: dict[int, str]  # pt -> "H264/90000"
    fmtp: dict[int, str]
    ssrcs: list[int]


@dataclass
class RemoteDescription:
    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    setup: str
    candidates: list[tuple[str, int]]
    sections: list[RemoteSection]
    ice_lite: bool


def parse_remote_sdp(text: str) -> RemoteDescription:
    """Parse the parts of a server's offer/answer a viewer needs (raises ValueError)."""
    ufrag = pwd = fp = setup = None
    cands: list[tuple[str, int]] = []
    sections: list[RemoteSection] = []
    ice_lite = False
    cur: RemoteSection | None = None
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            cur = RemoteSection(parts[0], "", {}, {}, [])
            if parts[1] != "0":
                sections.append(cur)
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        if name == "ice-lite":
            ice_lite = True
        elif name == "ice-ufrag":
            ufrag = ufrag or value.strip()
        elif name == "ice-pwd":
            pwd = pwd or value.strip()
        elif name == "fingerprint" and value.lower().startswith("sha-256"):
            fp = fp or value.split(None, 1)[1].strip()
        elif name == "setup":
            setup = setup or value.strip()
        elif name == "candidate":
            p = value.split()
            if len(p) >= 8 and p[2].lower() == "udp" and ":" not in p[4]:
                addr = (p[4], int(p[5]))
                if addr not in cands:
                    cands.append(addr)
        elif cur is not None:
            if name == "mid":
                cur.mid = value.strip()
            elif name == "rtpmap":
                pt, _, enc = value.partition(" ")
                cur.codecs[int(pt)] = enc.strip()
            elif name == "fmtp":
                pt, _, params = value.partition(" ")
                if pt.isdigit():
                    cur.fmtp[int(pt)] = params.strip()
            elif name == "ssrc":
                ssrc = int(value.split()[0])
                if ssrc not in cur.ssrcs:
                    cur.ssrcs.append(ssrc)
    if not (ufrag and pwd and fp):
        raise ValueError("remote SDP lacks ice-ufrag, ice-pwd or sha-256 fingerprint")
    return RemoteDescription(ufrag, pwd, fp, setup or "actpass", cands, sections, ice_lite)


def _pick_pt(section: RemoteSection) -> int | None:
    want = "h264/90000" if section.kind == "video" else "opus/48000"
    for pt, enc in section.codecs.items():
        if enc.lower().startswith(want):
            if section.kind == "video" and "packetization-mode=1" not in section.fmtp.get(pt, ""):
                continue
            return pt
    return None


# --- RTCP builders (viewer side) -------------------------------------------------------------


def build_rr(sender_ssrc: int, blocks: list[tuple[int, int, int, int, int, int, int]]) -> bytes:
    """RR with report blocks (ssrc, fraction, lost, ext_highest, jitter, lsr, dlsr)."""
    body = b"".join(
        struct.pack(
            "!IB3sIIII",
            ssrc,
            fraction & 0xFF,
            max(min(lost, 0x7FFFFF), -0x800000).to_bytes(3, "big", signed=True),
            ext & 0xFFFFFFFF,
            jitter & 0xFFFFFFFF,
            lsr,
            dlsr,
        )
        for ssrc, fraction, lost, ext, jitter, lsr, dlsr in blocks
    )
    length = (8 + len(body)) // 4 - 1
    return struct.pack("!BBHI", 0x80 | len(blocks), 201, length, sender_ssrc) + body


def build_sdes(ssrc: int, cname: bytes) -> bytes:
    item = bytes([1, len(cname)]) + cname + b"\x00"
    chunk = struct.pack("!I", ssrc) + item
    chunk += b"\x00" * (-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """Generic NACK (RFC 4585) for the given 16-bit sequence numbers."""
    fci = b""
    lost = sorted(set(lost))
    i = 0
    while i < len(lost):
        pid = lost[i]
        blp = 0
        j = i + 1
        while j < len(lost) and 0 < (lost[j] - pid) & 0xFFFF <= 16:
            blp |= 1 << (((lost[j] - pid) & 0xFFFF) - 1)
            j += 1
        fci += struct.pack("!HH", pid & 0xFFFF, blp)
        i = j
    return struct.pack("!BBHII", 0x81, 205, 2 + len(fci) // 4, sender_ssrc, media_ssrc) + fci


def payload_key(payload: bytes) -> int:
    """Content key of an RTP payload, equal for the same H264 NAL start / Opus frame no matter
    how the server rewrote the header (bytes 2..34; a 64-bit pair of checksums)."""
    part = payload[2:34] if len(payload) >= 34 else payload
    return (zlib.crc32(part) << 32) | zlib.adler32(part)


def rtp_payload(pkt: bytes) -> bytes:
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10 and len(pkt) >= off + 4:
        off += 4 + 4 * int.from_bytes(pkt[off + 2 : off + 4], "big")
    end = len(pkt)
    if pkt[0] & 0x20 and end > off:
        end -= pkt[-1]
    return pkt[off:end]


def is_h264_keyframe(p: bytes) -> bool:
    if not p:
        return False
    t = p[0] & 0x1F
    if t in (5, 7):
        return True
    if t == 28 and len(p) > 1:
        return bool(p[1] & 0x80) and (p[1] & 0x1F) in (5, 7)
    if t == 24:
        pos = 1
        while pos + 2 < len(p):
            size = int.from_bytes(p[pos : pos + 2], "big")
            if pos + 2 < len(p) and (p[pos + 2] & 0x1F) in (5, 7):
                return True
            pos += 2 + size
    return False


# --- per-track receive statistics --------------------------------------------------------------


class TrackStats:
    __slots__ = (
        "kind", "clock", "ssrc", "received", "dups", "first_ext", "highest_ext", "gaps",
        "nack_sent", "recovered", "seen", "last_ts", "min_transit", "transit", "last_arrival",
        "max_spacing", "bytes", "snap", "lsr", "lsr_time", "last_rr_expected", "last_rr_received",
        "jitter", "prev_transit", "frames", "keep_transit",
    )  # fmt: skip

    def __init__(self, kind: str, clock: int, ssrc: int, keep_transit: bool = False) -> None:
        self.kind = kind
        self.frames = 0  # distinct RTP timestamps (video: frames delivered)
        self.keep_transit = keep_transit
        self.clock = clock
        self.ssrc = ssrc
        self.received = 0
        self.dups = 0
        self.first_ext = -1
        self.highest_ext = -1
        self.gaps = 0
        self.nack_sent = 0
        self.recovered = 0
        self.seen = bytearray(65536)
        self.last_ts = -1
        self.min_transit = 1e18
        self.transit: list[float] = []
        self.last_arrival = 0.0
        self.max_spacing = 0.0
        self.bytes = 0
        self.snap: tuple[int, int] = (0, 0)
        self.lsr = 0
        self.lsr_time = 0.0
        self.last_rr_expected = 0
        self.last_rr_received = 0
        self.jitter = 0.0
        self.prev_transit: float | None = None

    @property
    def expected(self) -> int:
        return 0 if self.first_ext < 0 else self.highest_ext - self.first_ext + 1

    def on_packet(self, seq: int, ts: int, now: float, size: int) -> list[int] | None:
        """Count one packet; returns newly missing sequence numbers (for a NACK) or None."""
        self.bytes += size
        if self.first_ext < 0:
            self.first_ext = self.highest_ext = seq
            self.received = 1
            self.seen[seq] = 1
            self.last_arrival = now
            self._ts(ts, now)
            return None
        hi = self.highest_ext
        delta = (seq - hi) & 0xFFFF
        missing = None
        if delta == 0:
            self.dups += 1
            return None
        if delta < 0x8000:  # forward
            ext = hi + delta
            if delta > 1:
                self.gaps += 1
                missing = [(hi + k) & 0xFFFF for k in range(1, min(delta, 200))]
                for s in missing:
                    self.seen[s] = 0
            self.highest_ext = ext
            self.seen[seq] = 1
            self.received += 1
            spacing = now - self.last_arrival
            if spacing > self.max_spacing:
                self.max_spacing = spacing
            self.last_arrival = now
            self._ts(ts, now)
        else:  # late: retransmission or reordering
            if self.seen[seq]:
                self.dups += 1
            else:
                self.seen[seq] = 1
                self.received += 1
                self.recovered += 1
        return missing

    def _ts(self, ts: int, now: float) -> None:
        if ts == self.last_ts:
            return
        self.last_ts = ts
        self.frames += 1
        transit = now - ts / self.clock
        if self.prev_transit is not None:
            d = abs(transit - self.prev_transit)
            self.jitter += (d - self.jitter) / 16
        self.prev_transit = transit
        if transit < self.min_transit:
            self.min_transit = transit
        if self.keep_transit and len(self.transit) < 20000:
            self.transit.append(transit)


# --- the viewer ---------------------------------------------------------------------------------


@dataclass
class Timing:
    start: float = 0.0  # signalling request sent
    signalled: float = 0.0  # 201 / offer received
    ice: float = 0.0
    dtls: float = 0.0
    first_rtp: float = 0.0
    first_keyframe: float = 0.0


@dataclass
class Viewer:
    index: int
    host: str
    certificate: Certificate
    probe: bool = False
    sample_every: int = 32
    sock: socket.socket = field(init=False)
    local_ufrag: str = field(default_factory=lambda: secrets.token_hex(4))
    local_pwd: str = field(default_factory=lambda: secrets.token_hex(12))
    remote: RemoteDescription | None = None
    remote_addr: tuple[str, int] | None = None
    controlling: bool = True
    dtls: DtlsEndpoint | None = None
    srtp: SrtpSession | None = None
    ssrc: int = field(default_factory=lambda: random.randint(1, 0x7FFFFFFF))
    pt_kind: dict[int, str] = field(default_factory=dict)
    tracks: dict[int, TrackStats] = field(default_factory=dict)  # by media ssrc
    timing: Timing = field(default_factory=Timing)
    ice_ok: bool = False
    failed: str | None = None
    closed: bool = False
    auth_fail: int = 0
    unprotected: int = 0
    rtcp_in: int = 0
    rtcp_out: int = 0
    stun_in: int = 0
    counter: int = 0
    keyframe_seen: bool = False
    latency_samples: list[tuple[int, float]] = field(default_factory=list)
    control: Any = None  # trio.MemorySendChannel for STUN/DTLS datagrams
    next_rtcp: float = 0.0
    session_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: video SRTP that arrived before this viewer's keys (see ``DataPlane._rtp``)
    early: list[tuple[bytes, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((self.host, 0))
        self.sock.setblocking(False)
        if self.probe:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.cname = f"bench-{self.index}".encode()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    # -- SDP ---------------------------------------------------------------------------------

    def _candidate(self) -> str:
        return f"a=candidate:1 1 udp 2130706431 {self.host} {self.port} typ host\r\n"

    def make_offer(self, setup: str = "actpass") -> str:
        """A browser-like recvonly offer: H264 (packetization-mode=1, 42e01f) + Opus, bundled."""
        fp = self.certificate.fingerprint
        common = (
            f"c=IN IP4 {self.host}\r\na=rtcp:{self.port} IN IP4 {self.host}\r\n"
            f"a=ice-ufrag:{self.local_ufrag}\r\na=ice-pwd:{self.local_pwd}\r\n"
            f"a=fingerprint:sha-256 {fp}\r\na=setup:{setup}\r\n"
        )
        sdp = (
            "v=0\r\n"
            f"o=- {random.randint(1, 2**62)} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
            "a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
            f"m=video {self.port} UDP/TLS/RTP/SAVPF 102 108\r\n{common}a=mid:0\r\na=recvonly\r\n"
            "a=rtcp-mux\r\na=rtcp-rsize\r\n"
            "a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n"
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
            "a=rtpmap:108 H264/90000\r\na=rtcp-fb:108 nack\r\na=rtcp-fb:108 nack pli\r\n"
            "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
            f"{self._candidate()}a=end-of-candidates\r\n"
            f"m=audio {self.port} UDP/TLS/RTP/SAVPF 111\r\n{common}a=mid:1\r\na=recvonly\r\n"
            "a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
            f"{self._candidate()}a=end-of-candidates\r\n"
        )
        self.controlling = True
        return sdp

    def accept_answer(self, text: str) -> None:
        self.remote = parse_remote_sdp(text)
        self._learn(self.remote, answer=True)

    def answer_offer(self, text: str) -> str:
        """Answer a server's offer (Janus): recvonly, setup:active, one codec per section."""
        self.remote = parse_remote_sdp(text)
        self.controlling = False
        fp = self.certificate.fingerprint
        mids = [s.mid for s in self.remote.sections]
        out = [
            "v=0\r\n",
            f"o=- {random.randint(1, 2**62)} 2 IN IP4 {self.host}\r\ns=-\r\nt=0 0\r\n",
            f"a=group:BUNDLE {' '.join(mids)}\r\na=msid-semantic: WMS\r\n",
        ]
        for sec in self.remote.sections:
            pt = _pick_pt(sec)
            if pt is None:
                out.append(f"m={sec.kind} 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:{sec.mid}\r\n")
                continue
            out.append(
                f"m={sec.kind} {self.port} UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 {self.host}\r\n"
                f"a=mid:{sec.mid}\r\na=recvonly\r\na=rtcp-mux\r\n"
                f"a=ice-ufrag:{self.local_ufrag}\r\na=ice-pwd:{self.local_pwd}\r\n"
                f"a=fingerprint:sha-256 {fp}\r\na=setup:active\r\n"
                f"a=rtpmap:{pt} {sec.codecs[pt]}\r\n"
            )
            if pt in sec.fmtp:
                out.append(f"a=fmtp:{pt} {sec.fmtp[pt]}\r\n")
            if sec.kind == "video":
                out.append(f"a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n")
            out.append(f"{self._candidate()}a=end-of-candidates\r\n")
        self._learn(self.remote, answer=False)
        return "".join(out)

    def _learn(self, remote: RemoteDescription, answer: bool) -> None:
        for sec in remote.sections:
            for pt, enc in sec.codecs.items():
                low = enc.lower()
                if low.startswith("h264") or low.startswith("vp8"):
                    self.pt_kind[pt] = "video"
                elif low.startswith("opus"):
                    self.pt_kind[pt] = "audio"
        if not remote.candidates:
            raise ValueError("remote SDP has no IPv4 UDP candidate")
        same = [c for c in remote.candidates if c[0] == self.host]
        self.remote_addr = (same or remote.candidates)[0]
        # answer "passive" (or offer actpass, which we answered active) -> we are the client
        self.dtls_role = "server" if (answer and remote.setup == "active") else "client"

    # -- sending (plain non-blocking socket; drops on a full buffer) --------------------------

    def send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        target = addr or self.remote_addr
        if target is None or self.closed:
            return
        try:
            self.sock.sendto(data, target)
        except (BlockingIOError, OSError):
            pass


# --- the data thread ------------------------------------------------------------------------------


class DataPlane:
    """One thread: epoll over all viewer sockets, RTP counting, SRTCP in and out."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self.ep = select.epoll()
        self.by_fd: dict[int, Viewer] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-dataplane", daemon=True)
        self.pending: collections.deque[tuple[Viewer, bytes, tuple[str, int], float]] = (
            collections.deque()
        )
        self._flush_scheduled = False
        self.control_handler: Any = None
        self.loops = 0
        self.packets = 0
        self.batch_sleep = 0.002

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.ep.close()

    def add(self, viewer: Viewer) -> None:
        with self.lock:
            self.by_fd[viewer.sock.fileno()] = viewer
            self.ep.register(viewer.sock.fileno(), select.EPOLLIN)

    def remove(self, viewer: Viewer) -> None:
        with self.lock:
            fd = viewer.sock.fileno()
            if self.by_fd.pop(fd, None) is not None:
                try:
                    self.ep.unregister(fd)
                except OSError:
                    pass

    # control datagrams -> trio
    def _to_trio(self, viewer: Viewer, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.pending.append((viewer, data, addr, now))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                self.token.run_sync_soon(self._flush)
            except trio.RunFinishedError:
                pass

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self.pending:
            viewer, data, addr, now = self.pending.popleft()
            if self.control_handler is not None:
                self.control_handler(viewer, data, addr, now)

    def _run(self) -> None:
        buf = bytearray(2048)
        mv = memoryview(buf)
        anc = socket.CMSG_SPACE(16)
        poll = self.ep.poll
        by_fd = self.by_fd
        next_rtcp_check = 0.0
        while not self.stop.is_set():
            try:
                events = poll(0.02)
            except OSError:
                return
            self.loops += 1
            now = time.time()
            before = self.packets
            for fd, _ in events:
                v = by_fd.get(fd)
                if v is None:
                    continue
                sock = v.sock
                while True:
                    try:
                        if v.probe:
                            n, ancdata, _, addr = sock.recvmsg_into([mv], anc)
                            arrival = now
                            for level, kind, data in ancdata:
                                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                                    sec, nsec = struct.unpack("qq", data[:16])
                                    arrival = sec + nsec * 1e-9
                        else:
                            n, addr = sock.recvfrom_into(mv)
                            arrival = now
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if n < 2:
                        continue
                    b0 = buf[0]
                    if 128 <= b0 <= 191:
                        b1 = buf[1]
                        if 192 <= b1 <= 223:
                            self._rtcp(v, bytes(mv[:n]), arrival)
                        else:
                            self._rtp(v, mv, n, arrival)
                    else:
                        self._to_trio(v, bytes(mv[:n]), addr, arrival)
            if self.packets - before > 8:
                # under load: let datagrams pile up in the socket buffers (1 MiB each) and
                # drain them in bulk — fewer wakeups per packet. Probe viewers keep exact
                # (kernel) arrival times; others' arrival times are this coarse.
                time.sleep(self.batch_sleep)
            if now >= next_rtcp_check:
                next_rtcp_check = now + 0.1
                for v in list(by_fd.values()):
                    if v.srtp is not None and now >= v.next_rtcp:
                        v.next_rtcp = now + 1.0 + random.random() * 0.1
                        self._send_rr(v, now)

    def _rtp(self, v: Viewer, mv: memoryview, n: int, arrival: float) -> None:
        if n < 12:
            return
        self.packets += 1
        seq, ts, ssrc = struct.unpack_from("!HII", mv, 2)
        track = v.tracks.get(ssrc)
        if track is None:
            kind = v.pt_kind.get(mv[1] & 0x7F, "video")
            track = TrackStats(kind, 90000 if kind == "video" else 48000, ssrc, v.probe)
            v.tracks[ssrc] = track
            if not v.timing.first_rtp:
                v.timing.first_rtp = arrival
        missing = track.on_packet(seq, ts, arrival, n)
        srtp = v.srtp
        if srtp is None:
            # DTLS finishes on the trio side while SRTP arrives here: a server that sends
            # right after its Finished (e.g. a GOP cache) would otherwise have its first
            # keyframe missed. A browser reads both in order; keep them for when keys exist.
            if track.kind == "video" and len(v.early) < EARLY_PACKETS:
                v.early.append((bytes(mv[:n]), arrival))
            return
        if v.early:
            self._replay_early(v, srtp)
        if missing and track.kind == "video":
            track.nack_sent += len(missing)
            self._send_rtcp(v, build_nack(v.ssrc, ssrc, missing))
        v.counter += 1
        if v.probe or (track.kind == "video" and not v.keyframe_seen) or (
            v.counter % v.sample_every == 0
        ):
            payload = self._unprotect(v, srtp, bytes(mv[:n]), track.kind == "video", arrival)
            if payload is not None and v.probe and len(v.latency_samples) < 200000:
                v.latency_samples.append((payload_key(payload), arrival))

    @staticmethod
    def _unprotect(v: Viewer, srtp: SrtpSession, data: bytes, video: bool,
                   arrival: float) -> bytes | None:
        """The RTP payload of one SRTP packet (None when it does not authenticate; counted),
        noting the viewer's first keyframe."""
        try:
            plain = srtp.unprotect(data)
        except ParseError as exc:
            if exc.reason == "srtp-auth":
                v.auth_fail += 1
            return None
        v.unprotected += 1
        payload = rtp_payload(plain)
        if video and not v.keyframe_seen and is_h264_keyframe(payload):
            v.keyframe_seen = True
            v.timing.first_keyframe = arrival
        return payload

    def _replay_early(self, v: Viewer, srtp: SrtpSession) -> None:
        """Look for the first keyframe in the video that arrived before the keys did."""
        early, v.early = v.early, []
        for data, arrival in early:
            if v.keyframe_seen:
                return
            self._unprotect(v, srtp, data, True, arrival)

    def _rtcp(self, v: Viewer, data: bytes, arrival: float) -> None:
        v.rtcp_in += 1
        srtp = v.srtp
        if srtp is None:
            return
        try:
            plain = srtp.unprotect_rtcp(data)
        except ParseError:
            return
        pos = 0
        while pos + 8 <= len(plain):
            pt = plain[pos + 1]
            length = (int.from_bytes(plain[pos + 2 : pos + 4], "big") + 1) * 4
            if pt == 200 and pos + 28 <= len(plain):
                ssrc, ntp_hi, ntp_lo = struct.unpack_from("!III", plain, pos + 4)
                track = v.tracks.get(ssrc)
                if track is not None:
                    track.lsr = ((ntp_hi & 0xFFFF) << 16) | (ntp_lo >> 16)
                    track.lsr_time = arrival
            pos += length

    def _send_rtcp(self, v: Viewer, rtcp: bytes) -> None:
        srtp = v.srtp
        if srtp is None:
            return
        try:
            v.send(srtp.protect_rtcp(rtcp))
            v.rtcp_out += 1
        except ParseError:
            pass

    def _send_rr(self, v: Viewer, now: float) -> None:
        blocks = []
        for t in list(v.tracks.values()):
            exp = t.expected
            exp_int = exp - t.last_rr_expected
            rec_int = t.received - t.last_rr_received
            t.last_rr_expected, t.last_rr_received = exp, t.received
            lost_int = exp_int - rec_int
            fraction = 0 if exp_int <= 0 or lost_int <= 0 else (lost_int << 8) // exp_int
            dlsr = int((now - t.lsr_time) * 65536) if t.lsr else 0
            blocks.append(
                (t.ssrc, fraction, exp - t.received, t.highest_ext, int(t.jitter * t.clock),
                 t.lsr, dlsr & 0xFFFFFFFF)
            )  # fmt: skip
        if blocks:
            self._send_rtcp(v, build_rr(v.ssrc, blocks[:31]) + build_sdes(v.ssrc, v.cname))


# --- the trio side: ICE, DTLS, consent -------------------------------------------------------


class ViewerPool:
    """Owns the viewers, the data thread and the per-viewer control tasks.

    ``await nursery.start(pool.run)``; then :meth:`connect` viewers with a signalling
    coroutine (see ``bench/scenarios.py``). Everything stops when the nursery is cancelled.
    """

    def __init__(self, host: str = "127.0.0.1", probes: int = 4, sample_every: int = 32,
                 verify: bool = True) -> None:
        self.host = host
        #: False for the kernel floor (bench): its datagrams are not SRTP, so nothing is
        #: unprotected (no probes, no keyframe search): RTP is counted from the header only
        self.verify = verify
        self.probes = probes
        self.sample_every = sample_every
        self.certificate = Certificate.generate("bench-viewer")
        self.viewers: list[Viewer] = []
        self.plane: DataPlane | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.plane = DataPlane(trio.lowlevel.current_trio_token())
        self.plane.control_handler = self._on_control
        self.plane.start()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.plane.close()
            for v in self.viewers:
                v.closed = True
                v.sock.close()

    def new_viewer(self) -> Viewer:
        v = Viewer(
            index=len(self.viewers),
            host=self.host,
            certificate=self.certificate,
            probe=self.verify and len(self.viewers) < self.probes,
            sample_every=self.sample_every if self.verify else 1 << 62,
            keyframe_seen=not self.verify,
        )
        self.viewers.append(v)
        return v

    def _on_control(self, v: Viewer, data: bytes, addr: tuple[str, int], now: float) -> None:
        if v.control is not None:
            try:
                v.control.send_nowait((data, addr))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def establish(self, v: Viewer, timeout: float = 15.0) -> bool:
        """After signalling: ICE + DTLS until SRTP keys exist. Then keeps consent running
        in the pool's nursery. Returns False (and sets ``v.failed``) on failure."""
        assert self.plane is not None and self._nursery is not None
        send, recv = trio.open_memory_channel[tuple[bytes, tuple[str, int]]](256)
        v.control = send
        self.plane.add(v)
        done = trio.Event()
        self._nursery.start_soon(self._control_loop, v, recv, done)
        with trio.move_on_after(timeout):
            await done.wait()
        if v.srtp is None:
            if v.failed is None:
                v.failed = "timeout " + ("dtls" if v.ice_ok else "ice")
            self.close_viewer(v)  # stops its control loop too
        return v.srtp is not None

    def _binding_request(self, v: Viewer) -> tuple[bytes, bytes]:
        assert v.remote is not None
        tid = os.urandom(12)
        msg = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.REQUEST,
            transaction_id=tid,
        )
        msg.attributes["USERNAME"] = f"{v.remote.ice_ufrag}:{v.local_ufrag}"
        msg.attributes["PRIORITY"] = 0x6E7F1EFF
        if v.controlling:
            msg.attributes["ICE-CONTROLLING"] = v.extra.setdefault(
                "tiebreaker", random.getrandbits(63)
            )
            msg.attributes["USE-CANDIDATE"] = None
        else:
            msg.attributes["ICE-CONTROLLED"] = v.extra.setdefault(
                "tiebreaker", random.getrandbits(63)
            )
        msg.add_message_integrity(v.remote.ice_pwd.encode())
        return bytes(msg), tid

    def _answer_stun(self, v: Viewer, data: bytes, addr: tuple[str, int]) -> str | None:
        """Answer a Binding request from the server (full ICE). Returns "answered", or
        "nominated" when it carried USE-CANDIDATE, or None when it was not valid."""
        try:
            msg = stun.parse_message(data)
        except Exception:
            return None
        if msg.message_class != stun.Class.REQUEST or msg.message_method != stun.Method.BINDING:
            return None
        if not msg.check_message_integrity(v.local_pwd.encode()):
            return None
        resp = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=msg.transaction_id,
        )
        resp.attributes["XOR-MAPPED-ADDRESS"] = addr
        resp.add_message_integrity(v.local_pwd.encode())
        v.send(bytes(resp), addr)
        return "nominated" if "USE-CANDIDATE" in msg.attributes else "answered"

    async def _control_loop(
        self,
        v: Viewer,
        recv: trio.MemoryReceiveChannel[tuple[bytes, tuple[str, int]]],
        done: trio.Event,
    ) -> None:
        assert v.remote is not None
        pending: dict[bytes, float] = {}
        next_check = 0.0
        dtls: DtlsEndpoint | None = None
        try:
            while not v.closed:
                now = trio.current_time()
                if now >= next_check:
                    req, tid = self._binding_request(v)
                    pending[tid] = now
                    if len(pending) > 50:
                        pending.pop(next(iter(pending)))
                    v.send(req)
                    # fast while connecting, then consent freshness every ~4 s (RFC 7675 ±20 %)
                    next_check = now + (0.05 if not v.ice_ok else 3.2 + random.random() * 1.6)
                deadline = next_check
                if dtls is not None and not v.extra.get("dtls_started"):
                    deadline = min(deadline, v.extra.get("dtls_deadline", 0))
                elif dtls is not None and not dtls.handshake_complete:
                    t = dtls.next_timeout()
                    if t is not None:
                        deadline = min(deadline, t)
                with trio.move_on_at(deadline):
                    data, addr = await recv.receive()
                    now = trio.current_time()
                    if data[0] <= 3:
                        v.stun_in += 1
                        if data[0] == 0 and data[1] == 1:  # Binding request
                            if self._answer_stun(v, data, addr) == "nominated":
                                v.extra["nominated"] = True  # USE-CANDIDATE from the controller
                                if dtls is not None and not dtls.handshake_complete and not v.extra.get("dtls_started"):
                                    v.extra["dtls_started"] = True
                                    dtls.start(now)
                                    for d in dtls.datagrams_to_send():
                                        v.send(d)
                            continue
                        tid = data[8:20]
                        if tid in pending:
                            try:
                                check_binding_response(data, tid, v.remote.ice_pwd)
                            except ParseError:
                                continue
                            pending.pop(tid, None)
                            if not v.ice_ok:
                                v.ice_ok = True
                                v.timing.ice = time.time()
                                v.remote_addr = addr
                                dtls = DtlsEndpoint(
                                    v.certificate, v.remote.fingerprint, role=v.dtls_role
                                )
                                v.dtls = dtls
                                next_check = now
                                # as the controlled side, wait (briefly) for the controller's
                                # nomination: a full ICE server drops DTLS before that
                                if v.controlling or v.extra.get("nominated"):
                                    v.extra["dtls_started"] = True
                                    dtls.start(now)
                                    for d in dtls.datagrams_to_send():
                                        v.send(d)
                                else:
                                    v.extra["dtls_deadline"] = now + 0.5
                    elif 20 <= data[0] <= 63 and dtls is not None:
                        try:
                            dtls.receive(data, now)
                        except DtlsError as exc:
                            v.failed = f"dtls: {exc}"
                            done.set()
                            return
                        for d in dtls.datagrams_to_send():
                            v.send(d)
                        if dtls.handshake_complete and v.srtp is None:
                            v.srtp = SrtpSession(dtls.srtp_keys())
                            v.timing.dtls = time.time()
                            done.set()
                    continue
                if dtls is not None and not v.extra.get("dtls_started"):
                    if trio.current_time() >= v.extra.get("dtls_deadline", 0):
                        v.extra["dtls_started"] = True
                        dtls.start(trio.current_time())
                        for d in dtls.datagrams_to_send():
                            v.send(d)
                    continue
                if dtls is not None and not dtls.handshake_complete:
                    try:
                        dtls.handle_timeout(trio.current_time())
                    except DtlsError as exc:
                        v.failed = f"dtls: {exc}"
                        done.set()
                        return
                    for d in dtls.datagrams_to_send():
                        v.send(d)
        finally:
            done.set()

    def close_viewer(self, v: Viewer) -> None:
        v.closed = True
        if self.plane is not None:
            self.plane.remove(v)
