"""UpstreamSession: an edge node's WHEP *client* session toward the node that runs a process.

The edge relay (``cluster.relay``, :mod:`trio_core.cluster.relay`) pulls a process from its
owner once and serves its own viewers from a local :class:`~rtp.source.Source`. Toward the
owner the edge is one ordinary WHEP viewer:

* :func:`build_whep_offer` — a ``recvonly`` offer (video H264 in the common profiles with
  ``packetization-mode=1`` + RTX, VP8; audio Opus), ``a=setup:active`` (we are the DTLS
  client), our certificate's fingerprint, no candidates (the owner is ICE-lite and learns
  our address from our checks);
* :func:`parse_whep_answer` — the owner's answer: its ICE credentials, fingerprint, the
  codec it chose per kind (as :class:`~rtp.whip_sdp.IngestTrack`) and its UDP host candidate;
* :class:`UpstreamSession` — the receive path of the WHIP :class:`~rtp.publisher.Publisher`
  (SRTP unprotect, RTX unwrap, NACK of gaps, receiver reports, PLI/NACK for the Source's
  viewers rate-limited, feeding ``Source.on_datagram``) with ICE turned around: we are the
  controlling full agent (:class:`~rtp.ice_client.IceClient`: Binding requests with
  USE-CANDIDATE, retransmission, consent refresh) and send the DTLS ClientHello once the
  first check succeeded. The mux routes the owner's Binding responses to
  :meth:`UpstreamSession.handle_stun_response` (by address).

It closes (``on_close``) when setup does not finish within ``setup_timeout``, when consent
fails (the owner stopped answering checks for ``consent_timeout``), when no RTP arrived for
``media_timeout`` s, on DTLS close_notify or an RTCP BYE from the owner.
Cancellation: as :class:`~rtp.publisher.Publisher` (:meth:`run` ends when it closes;
cancelling it closes it).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

import trio

from .errors import SdpError
from .ice_client import IceClient
from .publisher import CLIENT_HELLO_DELAY, Publisher, log
from .whip_sdp import IngestTrack, choose_tracks, parse_publish_offer

__all__ = ["UpstreamAnswer", "UpstreamSession", "build_whep_offer", "parse_whep_answer"]

#: (payload type, profile-level-id) of the H264 we offer, most decodable first
_H264 = ((102, "42e01f"), (104, "42001f"), (106, "4d001f"), (108, "640032"), (110, "f4001f"))
_VP8 = 96
_OPUS = 111


def build_whep_offer(*, ice_ufrag: str, ice_pwd: str, fingerprint: str) -> str:
    """A recvonly WHEP offer (see the module docstring)."""
    fp = fingerprint.strip()
    if fp.lower().startswith("sha-256"):
        fp = fp[7:].strip()
    common = [f"a=ice-ufrag:{ice_ufrag}", f"a=ice-pwd:{ice_pwd}",
              f"a=fingerprint:sha-256 {fp.upper()}", "a=setup:active", "a=recvonly",
              "a=rtcp-mux", "a=rtcp-rsize"]
    video_pts = [pt for pt, _ in _H264] + [_VP8]
    formats = " ".join(f"{pt} {pt + 1}" for pt in video_pts)
    lines = ["v=0", f"o=- {secrets.randbits(62)} 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE 0 1",
             f"m=video 9 UDP/TLS/RTP/SAVPF {formats}", "c=IN IP4 0.0.0.0", "a=mid:0", *common]
    for pt, profile in _H264:
        lines.append(f"a=rtpmap:{pt} H264/90000")
        lines += [f"a=rtcp-fb:{pt} {fb}" for fb in ("nack", "nack pli", "ccm fir", "goog-remb")]
        lines.append(f"a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;"
                     f"profile-level-id={profile}")
        lines += [f"a=rtpmap:{pt + 1} rtx/90000", f"a=fmtp:{pt + 1} apt={pt}"]
    lines.append(f"a=rtpmap:{_VP8} VP8/90000")
    lines += [f"a=rtcp-fb:{_VP8} {fb}" for fb in ("nack", "nack pli", "ccm fir", "goog-remb")]
    lines += [f"a=rtpmap:{_VP8 + 1} rtx/90000", f"a=fmtp:{_VP8 + 1} apt={_VP8}"]
    lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {_OPUS}", "c=IN IP4 0.0.0.0", "a=mid:1", *common,
              f"a=rtpmap:{_OPUS} opus/48000/2", f"a=fmtp:{_OPUS} minptime=10;useinbandfec=1"]
    return "\r\n".join(lines) + "\r\n"


@dataclass
class UpstreamAnswer:
    """What the owner's answer says: its ICE credentials, fingerprint, tracks, candidate."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    setup: str
    tracks: dict[str, IngestTrack]
    candidate: tuple[str, int]


def parse_whep_answer(text: str) -> UpstreamAnswer:
    """Parse the owner's answer. Raises SdpError naming the problem (no usable track, no
    UDP host candidate, a DTLS role that is not ``passive``)."""
    parsed = parse_publish_offer(text)
    if parsed.setup != "passive":
        raise SdpError(f"the owner's answer must be setup:passive (got {parsed.setup!r})")
    tracks = choose_tracks(parsed)
    found: list[tuple[str, int]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("a=candidate:"):
            continue
        parts = line[len("a=candidate:"):].split()
        if len(parts) < 8 or parts[2].lower() != "udp" or parts[7] != "host":
            continue
        try:
            found.append((str(ip_address(parts[4])), int(parts[5])))
        except ValueError:
            continue
    if not found:
        raise SdpError("the owner's answer has no UDP host candidate")
    found.sort(key=lambda c: ip_address(c[0]).version)  # IPv4 first
    return UpstreamAnswer(parsed.ice_ufrag, parsed.ice_pwd, parsed.fingerprint, parsed.setup,
                          tracks, found[0])


class UpstreamSession(Publisher):
    """The receive side of one upstream WHEP session (see the module docstring). ``kw``: as
    :class:`~rtp.publisher.Publisher` (``ice_ufrag``/``ice_pwd`` are ours, ``remote_ufrag``
    the owner's); ``remote_pwd`` and ``remote_addr`` from the owner's answer."""

    def __init__(self, *, remote_pwd: str, remote_addr: tuple[str, int], **kw: Any) -> None:
        kw["dtls_role"] = "client"
        super().__init__(**kw)
        self.remote = remote_addr
        self.ice_client = IceClient(self.ice.local_ufrag, self.ice.remote_ufrag, remote_pwd,
                                    now=trio.current_time(),
                                    consent_timeout=self.consent_timeout)
        self.addrs.add(remote_addr)
        self.mux.route(remote_addr, self)  # the owner's responses, DTLS and SRTP

    def event(self, name: str, level: int = logging.INFO, **fields: object) -> None:
        if log.isEnabledFor(level):
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            log.log(level, "relay %s session=%s source=%s %s", name, self.id[:8],
                    self.source.id, text)

    def handle_stun(self, data: bytes, addr: tuple[str, int], now: float,
                    via: Any = None) -> bool:
        return False  # the owner is ICE-lite: it never checks us

    def handle_stun_response(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """A Binding response from the owner (routed by address by the mux)."""
        if self.closed or addr != self.remote:
            return
        if not self.ice_client.handle_response(data, now):
            return
        self.stun_checks += 1
        if self.addr is None:
            self.addr = addr
            self.event("ice-connected", remote=f"{addr[0]}:{addr[1]}",
                       after=f"{now - self.created:.3f}s")
        if self._dtls_addr is None:
            self._dtls_addr = addr
            self._hello_at = now + CLIENT_HELLO_DELAY
            self._wake()

    def stats(self) -> dict[str, object]:
        out = super().stats()
        out["ice_requests"] = self.ice_client.requests
        out["ice_responses"] = self.ice_client.responses
        return out

    def _on_timer(self, now: float) -> None:
        for datagram in self.ice_client.poll(now):
            self.mux.send(datagram, self.remote)
        if self.ice_client.failed(now):
            self.close("consent expired (the owner stopped answering checks)")
            return
        super()._on_timer(now)

    def _next_deadline(self) -> float:
        return min(super()._next_deadline(), self.ice_client.next_timeout())
