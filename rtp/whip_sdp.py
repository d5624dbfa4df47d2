"""SDP for WHIP (RFC 9725): parse a publisher's offer, choose what we take, build the answer.

Pure functions over ``str``. A publisher offers ``sendonly`` (or ``sendrecv``) sections; we
take, per media kind, one codec: video H264 with ``packetization-mode=1`` (any profile; the
most widely decodable one offered first: constrained baseline, baseline, main, high …) or
else VP8; audio Opus 48000/2. RTX (RFC 4588) is accepted when offered for the chosen video
codec. A section whose kind we know but whose codecs we cannot take is an
:class:`~rtp.errors.SdpError` naming what was offered and what is accepted (HTTP 400): a
publisher must not believe it is live while half its media goes nowhere.

The answer is ICE-lite (session-level ``a=ice-lite``), ``a=recvonly``, bundled on the one
UDP mux port (plus the ``tcptype passive`` ICE-TCP candidates when that port is on), and chooses the DTLS role that works with the offer: ``passive`` (we are the
DTLS server, as for WHEP) for ``actpass`` and ``active`` offers (browsers, OBS, FFmpeg with
``-whip_flags dtls_active``), ``active`` (we are the client) for a ``passive`` offer (FFmpeg's
``-f whip`` default). Video gets ``nack``, ``nack pli``, ``ccm fir`` and ``goog-remb``
feedback, so a browser publisher retransmits, sends keyframes on request and follows our
bandwidth estimate (REMB). No header extensions are negotiated: forwarded packets carry none
a viewer did not negotiate.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from .errors import SdpError
from .sdp import (
    Codec,
    MediaSection,
    Offer,
    SourceTrack,
    candidate_lines,
    h264_profile,
    parse_offer,
)

__all__ = ["IngestTrack", "PublishAnswer", "build_publish_answer", "choose_tracks",
           "parse_publish_offer", "source_tracks"]

ACCEPTED = {"video": "H264 (packetization-mode=1) or VP8", "audio": "opus/48000/2"}
_H264_ORDER = ("constrained-baseline", "baseline", "main", "constrained-high", "high")
_IGNORED = {"RTX", "RED", "ULPFEC", "FLEXFEC-03", "CN", "TELEPHONE-EVENT"}


@dataclass
class IngestTrack:
    """One track we receive: the publisher's mid, codec (its payload type) and RTX type."""

    kind: str
    mid: str
    codec: Codec
    rtx_payload_type: int | None = None


@dataclass
class PublishAnswer:
    """The answer text, the tracks taken by kind and our DTLS role (``"server"``/``"client"``)."""

    sdp: str
    tracks: dict[str, IngestTrack]
    dtls_role: str


def parse_publish_offer(text: str) -> Offer:
    """Parse a WHIP offer (raises SdpError naming the problem); ``a=setup:passive`` allowed."""
    return parse_offer(text, setups=("actpass", "active", "passive"))


def _h264_rank(codec: Codec) -> int:
    profile = h264_profile((codec.param("profile-level-id") or "42001f").lower())
    return _H264_ORDER.index(profile) if profile in _H264_ORDER else len(_H264_ORDER)


def _choose(section: MediaSection) -> Codec | None:
    if section.kind == "video":
        h264 = [c for c in section.codecs if c.mime == "H264" and c.clock_rate == 90000
                and c.param("packetization-mode", "0") == "1"]
        if h264:
            return min(h264, key=_h264_rank)  # stable: the offer's order among equals
        return next((c for c in section.codecs if c.mime == "VP8" and c.clock_rate == 90000),
                    None)
    return next((c for c in section.codecs if c.mime == "OPUS" and c.clock_rate == 48000
                 and (c.channels or 1) == 2), None)


def _offered(section: MediaSection) -> str:
    names: list[str] = []
    for c in section.codecs:
        if c.mime in _IGNORED:
            continue
        label = c.rtpmap()
        if c.mime == "H264":
            label = (f"H264 {c.param('profile-level-id') or '42001f'} "
                     f"packetization-mode={c.param('packetization-mode', '0')}")
        if label not in names:
            names.append(label)
    return ", ".join(names) or "nothing"


def choose_tracks(offer: Offer) -> dict[str, IngestTrack]:
    """The tracks we take from ``offer`` (at most one video, one audio). Raises SdpError:
    "no usable video codec: offered VP9/90000; accepted H264 (packetization-mode=1) or
    VP8", "the offer sends no audio or video" …"""
    tracks: dict[str, IngestTrack] = {}
    for m in offer.media:
        if m.kind not in ACCEPTED or m.rejected or not m.mid:
            continue
        if m.direction not in ("sendonly", "sendrecv") or m.kind in tracks:
            continue
        codec = _choose(m)
        if codec is None:
            raise SdpError(f"no usable {m.kind} codec: offered {_offered(m)}; accepted "
                           f"{ACCEPTED[m.kind]}")
        rtx = None
        if m.kind == "video":
            rtx = next((c.payload_type for c in m.codecs if c.mime == "RTX"
                        and c.param("apt") == str(codec.payload_type)), None)
        tracks[m.kind] = IngestTrack(m.kind, m.mid, codec, rtx)
    if not tracks:
        raise SdpError("the offer sends no audio or video (need a sendonly section with "
                       f"video {ACCEPTED['video']} or audio {ACCEPTED['audio']})")
    return tracks


def source_tracks(tracks: dict[str, IngestTrack]) -> dict[str, SourceTrack]:
    """The Source's track descriptions (codec parameters viewers are answered with)."""
    out: dict[str, SourceTrack] = {}
    for kind, t in tracks.items():
        fmtp = {k: v for k, v in t.codec.fmtp.items()
                if k.lower() in ("packetization-mode", "profile-level-id",
                                 "level-asymmetry-allowed", "sprop-parameter-sets",
                                 "stereo", "sprop-stereo", "useinbandfec", "minptime")}
        codec = Codec(t.codec.payload_type, t.codec.name, t.codec.clock_rate,
                      t.codec.channels, fmtp, [])
        out[kind] = SourceTrack(kind=kind, codec=codec)
    return out


def build_publish_answer(offer: Offer, tracks: dict[str, IngestTrack], *, ice_ufrag: str,
                         ice_pwd: str, fingerprint: str, candidates: list[tuple[str, int]],
                         tcp_candidates: Sequence[tuple[str, int]] = ()) -> PublishAnswer:
    """The ICE-lite, recvonly answer taking ``tracks`` (from :func:`choose_tracks`);
    ``tcp_candidates`` (the ICE-TCP port) are announced ``tcptype passive`` below the UDP
    ones, exactly as for viewers (:func:`rtp.sdp.candidate_lines`)."""
    if not candidates:
        raise ValueError("build_publish_answer needs at least one candidate")
    fp = fingerprint.strip()
    if fp.lower().startswith("sha-256"):
        fp = fp[7:].strip()
    fp = fp.upper()
    setup = "active" if offer.setup == "passive" else "passive"
    host, port = candidates[0]
    ip_version = "IP6" if ip_address(host).version == 6 else "IP4"
    by_mid = {t.mid: t for t in tracks.values()}
    bundled = [m.mid for m in offer.media
               if m.mid and not m.rejected and m.kind in ACCEPTED and m.mid in offer.bundle]
    lines = [
        "v=0",
        f"o=- {secrets.randbits(62)} 2 IN {ip_version} {host}",
        "s=-",
        "t=0 0",
        "a=ice-lite",
        *([f"a=group:BUNDLE {' '.join(bundled)}"] if bundled else []),
    ]
    for m in offer.media:
        if m.kind not in ACCEPTED or m.rejected or not m.mid:
            lines.append(f"m={m.kind} 0 {m.protocol} {' '.join(m.formats) or '0'}")
            lines.append(f"c=IN {ip_version} 0.0.0.0" if ip_version == "IP4" else "c=IN IP6 ::")
            if m.mid:
                lines.append(f"a=mid:{m.mid}")
            lines.append("a=inactive")
            continue
        track = by_mid.get(m.mid)
        if track is None:
            shown = m.codecs[0] if m.codecs else None
            formats = str(shown.payload_type) if shown else (m.formats[0] if m.formats else "0")
        else:
            shown = track.codec
            formats = str(shown.payload_type)
            if track.rtx_payload_type is not None:
                formats += f" {track.rtx_payload_type}"
        lines += [
            f"m={m.kind} {port} UDP/TLS/RTP/SAVPF {formats}",
            f"c=IN {ip_version} {host}",
            f"a=mid:{m.mid}",
            "a=recvonly" if track is not None else "a=inactive",
            f"a=ice-ufrag:{ice_ufrag}",
            f"a=ice-pwd:{ice_pwd}",
            f"a=fingerprint:sha-256 {fp}",
            f"a=setup:{setup}",
            "a=rtcp-mux",
        ]
        if m.rtcp_rsize:
            lines.append("a=rtcp-rsize")
        if shown is not None:
            lines.append(f"a=rtpmap:{shown.payload_type} {shown.rtpmap()}")
            if track is not None and m.kind == "video":
                lines += [f"a=rtcp-fb:{shown.payload_type} {fb}"
                          for fb in ("nack", "nack pli", "ccm fir", "goog-remb")]
            if shown.fmtp:
                lines.append(f"a=fmtp:{shown.payload_type} {shown.fmtp_line()}")
        if track is not None and track.rtx_payload_type is not None:
            lines += [f"a=rtpmap:{track.rtx_payload_type} rtx/90000",
                      f"a=fmtp:{track.rtx_payload_type} apt={shown.payload_type}"]  # type: ignore[union-attr]
        lines += candidate_lines(candidates, tcp_candidates)
    return PublishAnswer("\r\n".join(lines) + "\r\n", tracks,
                         "client" if setup == "active" else "server")
