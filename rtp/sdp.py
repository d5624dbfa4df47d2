"""SDP for WHEP: parse a browser's offer, parse FFmpeg's ``-sdp_file``, build the answer.

Pure functions over ``str``. Errors are typed: :class:`rtp.errors.SdpError` says what was
wrong with an offer; :class:`rtp.errors.NoCommonCodec` (a subclass) says why nothing the
browser offered can carry the source (maps to HTTP 406).

The answer is ICE-lite (session-level ``a=ice-lite``), bundles every accepted section on
one port, ``a=setup:passive`` (we are the DTLS server), ``a=rtcp-mux``, ``a=sendonly``, and
announces one SSRC per track (``a=msid`` + ``a=ssrc:N cname:…``) so the browser creates
tracks. Sections whose kind the source lacks are answered ``a=inactive`` (still bundled,
same port); non-media sections (e.g. data channels) are rejected with port 0.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address

from .errors import NoCommonCodec, SdpError

__all__ = [
    "Answer",
    "Codec",
    "MediaSection",
    "NegotiatedTrack",
    "Offer",
    "SdpFrag",
    "SourceTrack",
    "build_answer",
    "build_restart_sdpfrag",
    "candidate_lines",
    "h264_profile",
    "parse_offer",
    "parse_sdpfrag",
    "parse_source_sdp",
]

_MEDIA_KINDS = ("audio", "video")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_FINGERPRINT_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$")
_PLID_RE = re.compile(r"^[0-9A-Fa-f]{6}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9+/=._~:-]+$")

#: Static RTP payload types (RFC 3551) that may appear without an rtpmap.
_STATIC_PT: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    18: ("G729", 8000, 1),
}


# --- data model ----------------------------------------------------------------------------


@dataclass
class Codec:
    """One RTP payload format: ``a=rtpmap`` + ``a=fmtp`` + ``a=rtcp-fb`` of a payload type.

    ``channels`` is None when the rtpmap gives none (video); ``fmtp`` keeps keys as written
    (case preserved) — use :meth:`param` for case-insensitive lookup.
    """

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict)
    rtcp_fb: list[str] = field(default_factory=list)

    def param(self, key: str, default: str | None = None) -> str | None:
        """The fmtp parameter ``key`` (case-insensitive), or ``default``."""
        lowered = key.lower()
        for k, v in self.fmtp.items():
            if k.lower() == lowered:
                return v
        return default

    @property
    def mime(self) -> str:
        """``"video/H264"``-style name without kind: upper-cased codec name."""
        return self.name.upper()

    def rtpmap(self) -> str:
        """The rtpmap value after the payload type, e.g. ``"opus/48000/2"``."""
        text = f"{self.name}/{self.clock_rate}"
        if self.channels is not None and self.channels != 1:
            text += f"/{self.channels}"
        return text

    def fmtp_line(self) -> str:
        """The fmtp parameters joined as ``"k=v;k2=v2"`` (empty when there are none)."""
        return ";".join(f"{k}={v}" if v != "" else k for k, v in self.fmtp.items())


@dataclass
class MediaSection:
    """One ``m=`` section of a parsed description, with session-level fallbacks applied."""

    kind: str
    port: int
    protocol: str
    formats: list[str]
    mid: str | None = None
    direction: str = "sendrecv"
    codecs: list[Codec] = field(default_factory=list)
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprint: str | None = None
    setup: str | None = None
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    bundle_only: bool = False

    @property
    def rejected(self) -> bool:
        """True when the section is disabled (port 0 and not bundle-only)."""
        return self.port == 0 and not self.bundle_only


@dataclass
class Offer:
    """A parsed WebRTC offer. ICE credentials, fingerprint and setup are those of the
    (first) bundled media section; ``fingerprint`` is the sha-256 value ``"AB:CD:…"``."""

    media: list[MediaSection]
    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    setup: str
    bundle: list[str]
    ice_lite: bool = False


@dataclass
class SourceTrack:
    """One track of the source (FFmpeg's RTP output), as described by its ``-sdp_file``.

    ``port`` is the destination port in the source SDP (informational); ``control`` is
    FFmpeg's ``a=control`` value when present.
    """

    kind: str
    codec: Codec
    port: int = 0
    control: str | None = None

    @property
    def profile_level_id(self) -> str | None:
        """H264 ``profile-level-id`` (6 hex digits) or None."""
        return self.codec.param("profile-level-id")

    @property
    def sprop_parameter_sets(self) -> str | None:
        """H264 ``sprop-parameter-sets`` (comma-separated base64) or None."""
        return self.codec.param("sprop-parameter-sets")


@dataclass
class NegotiatedTrack:
    """What one viewer gets for one source track: the answered mid, PT, our SSRC, codec."""

    kind: str
    mid: str
    payload_type: int
    ssrc: int
    codec: Codec
    #: RTX (RFC 4588) payload type and SSRC when the viewer offered rtx for our payload type
    rtx_payload_type: int | None = None
    rtx_ssrc: int | None = None


@dataclass
class Answer:
    """The SDP answer text and the per-kind negotiated tracks.

    ``warnings`` lists source tracks that could not be offered to this viewer (and why).
    """

    sdp: str
    tracks: dict[str, NegotiatedTrack]
    warnings: list[str] = field(default_factory=list)


# --- low-level parsing ---------------------------------------------------------------------


def _lines(text: str, what: str) -> list[tuple[str, str]]:
    """Split SDP into (type, value) pairs. Checks it starts with ``v=0``."""
    if not isinstance(text, str):
        raise SdpError(f"not {what}: expected text")
    raw = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    raw = [line for line in raw if line]
    if not raw or raw[0] != "v=0":
        raise SdpError(f"not {what}: missing v=0")
    out: list[tuple[str, str]] = []
    for number, line in enumerate(raw, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"malformed SDP line {number}: {line[:40]!r}")
        out.append((line[0], line[2:]))
    return out


def _int(value: str, what: str, low: int = 0, high: int = 2**32 - 1) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise SdpError(f"malformed {what}: {value[:40]!r}")
    number = int(value)
    if not low <= number <= high:
        raise SdpError(f"{what} out of range: {number}")
    return number


def _split_attr(value: str) -> tuple[str, str | None]:
    """``"rtpmap:96 H264/90000"`` -> (``"rtpmap"``, ``"96 H264/90000"``); flags -> (name, None)."""
    name, sep, rest = value.partition(":")
    return name.strip().lower(), (rest if sep else None)


def _parse_fmtp_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        params[key.strip()] = val.strip() if sep else ""
    return params


def _parse_fingerprint(value: str) -> tuple[str, str]:
    """``"sha-256 AB:…"`` -> (``"sha-256"``, ``"AB:…"``)."""
    parts = value.split()
    if len(parts) != 2:
        raise SdpError(f"malformed a=fingerprint: {value[:60]!r}")
    return parts[0].lower(), parts[1].upper()


@dataclass
class _Section:
    """Mutable accumulator while parsing one m= section (or the session level)."""

    kind: str = ""
    port: int = 0
    protocol: str = ""
    formats: list[str] = field(default_factory=list)
    attrs: list[tuple[str, str | None]] = field(default_factory=list)


def _parse_description(text: str, what: str) -> tuple[_Section, list[_Section]]:
    session = _Section()
    media: list[_Section] = []
    current = session
    for kind, value in _lines(text, what):
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise SdpError(f"malformed m= line: {value[:60]!r}")
            port_text = parts[1].split("/", 1)[0]
            current = _Section(
                kind=parts[0].lower(),
                port=_int(port_text, "m= port", 0, 65535),
                protocol=parts[2],
                formats=parts[3:],
            )
            media.append(current)
        elif kind == "a":
            current.attrs.append(_split_attr(value))
    return session, media


def _codecs(section: _Section, require_rtpmap: bool = False) -> list[Codec]:
    """Build the codec list of a section in m= line order."""
    by_pt: dict[int, Codec] = {}
    fmtps: dict[int, dict[str, str]] = {}
    fbs: dict[int, list[str]] = {}
    wildcard_fb: list[str] = []
    for name, value in section.attrs:
        if value is None:
            continue
        if name == "rtpmap":
            pt_text, _, rest = value.strip().partition(" ")
            pt = _int(pt_text, "rtpmap payload type", 0, 127)
            enc = rest.strip().split("/")
            if len(enc) < 2 or not enc[0]:
                raise SdpError(f"malformed a=rtpmap: {value[:60]!r}")
            channels = _int(enc[2], "rtpmap channels", 1, 255) if len(enc) > 2 else None
            by_pt[pt] = Codec(pt, enc[0], _int(enc[1], "rtpmap clock rate", 1), channels)
        elif name == "fmtp":
            pt_text, _, rest = value.strip().partition(" ")
            if not pt_text.isascii() or not pt_text.isdigit():
                continue  # fmtp for a non-RTP format
            fmtps[_int(pt_text, "fmtp payload type", 0, 127)] = _parse_fmtp_params(rest)
        elif name == "rtcp-fb":
            pt_text, _, rest = value.strip().partition(" ")
            fb = " ".join(rest.split())
            if not fb:
                continue
            if pt_text == "*":
                wildcard_fb.append(fb)
            elif pt_text.isascii() and pt_text.isdigit():
                fbs.setdefault(_int(pt_text, "rtcp-fb payload type", 0, 127), []).append(fb)
    codecs: list[Codec] = []
    seen: set[int] = set()
    for fmt in section.formats:
        if not (fmt.isascii() and fmt.isdigit()):
            continue
        pt = int(fmt)
        if pt > 127 or pt in seen:
            continue
        seen.add(pt)
        codec = by_pt.get(pt)
        if codec is None:
            if require_rtpmap or pt not in _STATIC_PT:
                continue
            name, rate, channels = _STATIC_PT[pt]
            codec = Codec(pt, name, rate, channels)
        codec.fmtp = fmtps.get(pt, {})
        codec.rtcp_fb = [*wildcard_fb, *fbs.get(pt, [])]
        codecs.append(codec)
    return codecs


def _first(attrs: list[tuple[str, str | None]], name: str) -> str | None:
    for key, value in attrs:
        if key == name and value is not None:
            return value.strip()
    return None


def _has(attrs: list[tuple[str, str | None]], name: str) -> bool:
    return any(key == name for key, _ in attrs)


def _sha256(attrs: list[tuple[str, str | None]]) -> str | None:
    for key, value in attrs:
        if key == "fingerprint" and value is not None:
            algo, fp = _parse_fingerprint(value)
            if algo == "sha-256":
                if not _FINGERPRINT_RE.match(fp):
                    raise SdpError(f"malformed sha-256 fingerprint: {fp[:100]!r}")
                return fp
    return None


# --- offers --------------------------------------------------------------------------------


def parse_offer(text: str, *, setups: tuple[str, ...] = ("actpass", "active")) -> Offer:
    """Parse a browser's SDP offer (WHEP POST body).

    ``setups`` are the accepted ``a=setup`` values (a WHIP publisher may also offer
    ``passive``: FFmpeg's ``-f whip`` muxer does).

    Raises SdpError with a message naming the problem: "not an SDP offer: missing v=0",
    "missing a=ice-ufrag", "missing a=ice-pwd", "missing sha-256 fingerprint",
    "no audio or video section", "setup must be actpass or active", "missing a=mid", ...
    """
    session, sections = _parse_description(text, "an SDP offer")
    s_ufrag = _first(session.attrs, "ice-ufrag")
    s_pwd = _first(session.attrs, "ice-pwd")
    s_fp = _sha256(session.attrs)
    s_setup = _first(session.attrs, "setup")
    bundle: list[str] = []
    for key, value in session.attrs:
        if key == "group" and value is not None:
            parts = value.split()
            if parts and parts[0].upper() == "BUNDLE":
                bundle = parts[1:]
                break

    media: list[MediaSection] = []
    for sec in sections:
        direction = "sendrecv"
        for key, _ in sec.attrs:
            if key in _DIRECTIONS:
                direction = key
        m = MediaSection(
            kind=sec.kind,
            port=sec.port,
            protocol=sec.protocol,
            formats=sec.formats,
            mid=_first(sec.attrs, "mid"),
            direction=direction,
            ice_ufrag=_first(sec.attrs, "ice-ufrag") or s_ufrag,
            ice_pwd=_first(sec.attrs, "ice-pwd") or s_pwd,
            fingerprint=_sha256(sec.attrs) or s_fp,
            setup=(_first(sec.attrs, "setup") or s_setup),
            rtcp_mux=_has(sec.attrs, "rtcp-mux"),
            rtcp_rsize=_has(sec.attrs, "rtcp-rsize"),
            bundle_only=_has(sec.attrs, "bundle-only"),
        )
        if m.kind in _MEDIA_KINDS:
            m.codecs = _codecs(sec)
        media.append(m)

    usable = [m for m in media if m.kind in _MEDIA_KINDS and not m.rejected]
    if not usable:
        raise SdpError("no audio or video section")
    for m in usable:
        if not m.mid:
            raise SdpError(f"missing a=mid in the {m.kind} section")
        if "RTP/SAVP" not in m.protocol.upper() or "TLS" not in m.protocol.upper():
            raise SdpError(f"unsupported transport {m.protocol!r} (need UDP/TLS/RTP/SAVPF)")
        if not m.ice_ufrag:
            raise SdpError("missing a=ice-ufrag")
        if not m.ice_pwd:
            raise SdpError("missing a=ice-pwd")
        if not m.fingerprint:
            raise SdpError("missing sha-256 fingerprint")
        setup = (m.setup or "actpass").lower()
        if setup not in setups:
            raise SdpError(f"setup must be {' or '.join(setups)} (got {m.setup!r})")
        m.setup = setup
        if not m.rtcp_mux:
            raise SdpError(f"missing a=rtcp-mux in the {m.kind} section (rtcp-mux is required)")
    for name, value in ((usable[0].ice_ufrag, "ice-ufrag"), (usable[0].ice_pwd, "ice-pwd")):
        if name is not None and not _TOKEN_RE.match(name):
            raise SdpError(f"malformed a={value}")
    mids = [m.mid for m in usable]
    if len(set(mids)) != len(mids):
        raise SdpError("duplicate a=mid")
    if len(usable) > 1 and not set(mids) <= set(bundle):
        raise SdpError("offer must bundle every media section (a=group:BUNDLE)")
    first = usable[0]
    assert first.ice_ufrag and first.ice_pwd and first.fingerprint and first.setup
    return Offer(
        media=media,
        ice_ufrag=first.ice_ufrag,
        ice_pwd=first.ice_pwd,
        fingerprint=first.fingerprint,
        setup=first.setup,
        bundle=bundle,
        ice_lite=_has(session.attrs, "ice-lite"),
    )


# --- FFmpeg's -sdp_file ----------------------------------------------------------------------


def parse_source_sdp(text: str) -> dict[str, SourceTrack]:
    """Parse FFmpeg's ``-sdp_file`` output into one :class:`SourceTrack` per track name.

    The first ``m=audio`` section is ``"audio"``, the first ``m=video`` ``"video"`` and a
    second ``m=video`` (a second video leg, e.g. VP8 next to H264) ``"video2"``; others are
    ignored. Each uses its first payload format. Raises SdpError ("not an SDP: missing
    v=0", "no audio or video section", "no codec in the video section", ...).
    """
    _, sections = _parse_description(text, "an SDP")
    tracks: dict[str, SourceTrack] = {}
    for sec in sections:
        if sec.kind not in _MEDIA_KINDS:
            continue
        name = sec.kind
        if name in tracks:
            if sec.kind != "video" or "video2" in tracks:
                continue
            name = "video2"
        codecs = _codecs(sec)
        if not codecs:
            raise SdpError(f"no codec in the {sec.kind} section")
        tracks[name] = SourceTrack(
            kind=sec.kind, codec=codecs[0], port=sec.port, control=_first(sec.attrs, "control")
        )
    if not tracks:
        raise SdpError("no audio or video section")
    return tracks


# --- H264 profiles ---------------------------------------------------------------------------

#: libwebrtc's profile-level-id classification: (profile_idc, mask, value, profile).
#: The constraint byte matches when ``constraints & mask == value``.
_H264_PATTERNS: list[tuple[int, int, int, str]] = [
    (0x42, 0b01001111, 0b01000000, "constrained-baseline"),
    (0x4D, 0b10001111, 0b10000000, "constrained-baseline"),
    (0x58, 0b11001111, 0b11000000, "constrained-baseline"),
    (0x42, 0b01001111, 0b00000000, "baseline"),
    (0x58, 0b11001111, 0b10000000, "baseline"),
    (0x4D, 0b10101111, 0b00000000, "main"),
    (0x64, 0b11111111, 0b00000000, "high"),
    (0x64, 0b11111111, 0b00001100, "constrained-high"),
    (0xF4, 0b11111111, 0b00000000, "high-444"),
]

#: For each source profile, the offered profiles whose decoders can play it.
_H264_DECODABLE_BY: dict[str, tuple[str, ...]] = {
    "constrained-baseline": (
        "constrained-baseline", "baseline", "main", "constrained-high", "high"
    ),
    "baseline": ("baseline", "constrained-baseline"),
    "main": ("main", "high"),
    "constrained-high": ("constrained-high", "high"),
    "high": ("high",),
    "high-444": ("high-444",),
}


def h264_profile(profile_level_id: str | None) -> str | None:
    """Classify an H264 ``profile-level-id`` like libwebrtc does.

    Returns "constrained-baseline", "baseline", "main", "constrained-high", "high",
    "high-444" or None (unknown/malformed). A missing value means 42001f (baseline), per
    RFC 6184 — pass ``"42001f"`` for that case yourself.
    """
    if profile_level_id is None or not _PLID_RE.match(profile_level_id):
        return None
    value = int(profile_level_id, 16)
    idc, constraints = value >> 16, (value >> 8) & 0xFF
    for p_idc, mask, expect, name in _H264_PATTERNS:
        if idc == p_idc and constraints & mask == expect:
            return name
    return None


# --- answers -------------------------------------------------------------------------------


def _match_h264(source: Codec, offered: list[Codec]) -> tuple[Codec, str] | None:
    """Pick the offered H264 format for an H264 source; return (offered, answer plid)."""
    src_plid = (source.param("profile-level-id") or "42001f").lower()
    src_profile = h264_profile(src_plid)
    if src_profile is None:
        return None
    ok = _H264_DECODABLE_BY[src_profile]
    exact: tuple[Codec, str] | None = None
    compatible: tuple[Codec, str] | None = None
    for codec in offered:
        if codec.mime != "H264" or codec.clock_rate != 90000:
            continue
        if codec.param("packetization-mode", "0") != "1":
            continue
        plid = (codec.param("profile-level-id") or "42001f").lower()
        profile = h264_profile(plid)
        if profile == src_profile and exact is None:
            exact = (codec, src_plid)
        elif profile in ok and compatible is None:
            # Answer the offered profile (what the browser understands) at the source's level.
            compatible = (codec, plid[:4] + src_plid[4:])
    return exact or compatible


def _negotiate(source: Codec, offered: list[Codec]) -> Codec | None:
    """The answer codec (offered PT, parameters for the answer) for ``source``, or None."""
    name = source.mime
    if name == "H264":
        found = _match_h264(source, offered)
        if found is None:
            return None
        codec, plid = found
        fmtp: dict[str, str] = {}
        if codec.param("level-asymmetry-allowed") == "1":
            fmtp["level-asymmetry-allowed"] = "1"
        fmtp["packetization-mode"] = "1"
        fmtp["profile-level-id"] = plid
        return Codec(codec.payload_type, codec.name, 90000, None, fmtp, [])
    for codec in offered:
        if codec.mime != name or codec.clock_rate != source.clock_rate:
            continue
        if name == "OPUS":
            if (codec.channels or 1) != 2:
                continue
            fmtp = {"minptime": "10", "useinbandfec": "1"}
            if (source.channels or 1) == 2:
                fmtp["stereo"] = "1"
                fmtp["sprop-stereo"] = "1"
            return Codec(codec.payload_type, codec.name, codec.clock_rate, 2, fmtp, [])
        if (codec.channels or 1) != (source.channels or 1):
            continue
        fmtp = {
            k: v
            for k, v in source.fmtp.items()
            if k.lower() not in ("sprop-parameter-sets", "sprop-stereo")
        }
        return Codec(codec.payload_type, codec.name, codec.clock_rate, codec.channels, fmtp, [])
    return None


def _describe_offered(kind: str, offered: list[Codec]) -> str:
    names: list[str] = []
    for c in offered:
        if c.mime in ("RTX", "RED", "ULPFEC", "FLEXFEC-03", "CN", "TELEPHONE-EVENT"):
            continue
        label = c.name
        if c.mime == "H264":
            label += f" {c.param('profile-level-id') or '42001f'}"
            label += f" pm={c.param('packetization-mode', '0')}"
        if label not in names:
            names.append(label)
    return ", ".join(names) or "nothing"


def _source_label(track: SourceTrack) -> str:
    codec = track.codec
    if codec.mime == "H264":
        return f"H264 profile {track.profile_level_id or '42001f (default)'}"
    return codec.rtpmap()


_BROWSER_CODECS = {"H264", "VP8", "VP9", "AV1", "OPUS", "PCMU", "PCMA", "G722"}
_BROWSER_HINT = {
    "audio": "browsers decode opus/48000/2, PCMU, PCMA or G722: transcode to opus/48000/2",
    "video": "browsers decode H264 (baseline/main), VP8, VP9 or AV1: transcode",
}


def _no_match_reason(kind: str, track: SourceTrack, offered: list[Codec]) -> str:
    need = {
        "H264": "H264 packetization-mode=1 with a compatible profile",
        "OPUS": "opus/48000/2",
    }.get(track.codec.mime, track.codec.rtpmap())
    reason = f"offer has no {need} for the {kind} track; source is {_source_label(track)}"
    if track.codec.mime not in _BROWSER_CODECS:
        reason += f" ({_BROWSER_HINT.get(kind, 'not a WebRTC codec')})"
    return reason + f"; offered: {_describe_offered(kind, offered)}"


def _offered_rtx(offered: list[Codec], payload_type: int) -> Codec | None:
    """The offered ``rtx/90000`` format whose ``apt`` is ``payload_type`` (RFC 4588)."""
    for codec in offered:
        if codec.mime == "RTX" and codec.param("apt") == str(payload_type):
            return codec
    return None


def _random_ssrc(used: set[int]) -> int:
    while True:
        ssrc = secrets.randbits(32)
        if ssrc and ssrc not in used:
            used.add(ssrc)
            return ssrc


def _token(nbytes: int = 8) -> str:
    return secrets.token_hex(nbytes)


def build_answer(
    offer: Offer,
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str,
    candidates: list[tuple[str, int]],
    tracks: dict[str, SourceTrack],
    cname: str | None = None,
    stream_id: str | None = None,
    tcp_candidates: Sequence[tuple[str, int]] = (),
) -> Answer:
    """Build the ICE-lite, sendonly SDP answer to ``offer`` for the source ``tracks``.

    ``fingerprint`` is our certificate's sha-256 (``"AB:CD:…"``); ``candidates`` are the
    (ip, port) host candidates of the one UDP mux socket (the first one's port goes into
    every m= line); ``tcp_candidates`` the (ip, port) of the ICE-TCP port, answered as
    ``tcptype passive`` host candidates with a lower priority than every UDP one
    (:func:`candidate_lines`). Raises NoCommonCodec when no source track can be carried by anything
    offered; tracks that cannot be carried while others can are listed in
    ``Answer.warnings`` and their sections answered inactive.
    """
    if not candidates:
        raise ValueError("build_answer needs at least one candidate")
    fp = fingerprint.strip()
    if fp.lower().startswith("sha-256"):
        fp = fp[7:].strip()
    fp = fp.upper()
    cname = cname or _token(8)
    stream_id = stream_id or _token(8)
    host, port = candidates[0]
    ip_version = "IP6" if ip_address(host).version == 6 else "IP4"

    # Decide each section first, so that NoCommonCodec is raised before any output.
    # ``tracks`` maps track names to source tracks; a media kind may have several (e.g.
    # "video" H264 and "video2" VP8): the first one the offer can carry is chosen.
    by_media: dict[str, list[str]] = {}
    for name, src in tracks.items():
        by_media.setdefault(src.kind if src.kind in _MEDIA_KINDS else name, []).append(name)
    negotiated: dict[str, NegotiatedTrack] = {}
    by_mid: dict[str, NegotiatedTrack] = {}
    done: set[str] = set()
    reasons: dict[str, str] = {}
    plan: list[tuple[MediaSection, str, Codec | None]] = []  # (section, mode, codec)
    used_ssrcs: set[int] = set()
    for m in offer.media:
        if m.kind not in _MEDIA_KINDS or m.rejected or not m.mid:
            plan.append((m, "reject", None))
            continue
        names = by_media.get(m.kind, [])
        wants = m.direction in ("recvonly", "sendrecv")
        if not names or m.kind in done or not wants:
            plan.append((m, "inactive", None))
            continue
        chosen = ""
        codec = None
        for name in names:
            codec = _negotiate(tracks[name].codec, m.codecs)
            if codec is not None:
                chosen = name
                break
        if codec is None:
            reason = _no_match_reason(m.kind, tracks[names[0]], m.codecs)
            for other in names[1:]:
                reason += f" (nor for the source's {_source_label(tracks[other])})"
            reasons.setdefault(m.kind, reason)
            plan.append((m, "inactive", None))
            continue
        rtx: Codec | None = None
        if m.kind == "video":
            codec.rtcp_fb = ["nack", "nack pli"]
            rtx = _offered_rtx(m.codecs, codec.payload_type)
        done.add(m.kind)
        negotiated[chosen] = by_mid[m.mid] = NegotiatedTrack(
            kind=chosen,
            mid=m.mid,
            payload_type=codec.payload_type,
            ssrc=_random_ssrc(used_ssrcs),
            codec=codec,
            rtx_payload_type=None if rtx is None else rtx.payload_type,
            rtx_ssrc=None if rtx is None else _random_ssrc(used_ssrcs),
        )
        plan.append((m, "send", codec))
    if not negotiated:
        if reasons:
            raise NoCommonCodec("; ".join(reasons.values()))
        wanted = [m.kind for m in offer.media if m.kind in _MEDIA_KINDS and not m.rejected]
        raise NoCommonCodec(
            f"the offer asks for {', '.join(wanted) or 'nothing'} but the source has "
            f"{', '.join(sorted(tracks)) or 'no tracks'}"
        )
    for kind in by_media:
        if kind not in done and kind not in reasons:
            reasons[kind] = f"the offer has no section to carry the source's {kind} track"
    warnings = [reasons[k] for k in sorted(reasons) if k not in done]

    # Only a group the offer proposed may be answered (RFC 8843); a single-section offer
    # may come without one.
    bundled = [m.mid for m, mode, _ in plan if mode != "reject" and m.mid in offer.bundle]
    lines = [
        "v=0",
        f"o=- {secrets.randbits(62)} 2 IN {ip_version} {host}",
        "s=-",
        "t=0 0",
        "a=ice-lite",
        *([f"a=group:BUNDLE {' '.join(bundled)}"] if bundled else []),
        f"a=msid-semantic: WMS {stream_id}",
    ]
    for m, mode, codec in plan:
        if mode == "reject":
            lines.append(f"m={m.kind} 0 {m.protocol} {' '.join(m.formats) or '0'}")
            lines.append(f"c=IN {ip_version} 0.0.0.0" if ip_version == "IP4" else "c=IN IP6 ::")
            if m.mid:
                lines.append(f"a=mid:{m.mid}")
            lines.append("a=inactive")
            continue
        if codec is None:
            # Inactive: still bundled on our port; answer one offered format.
            shown = m.codecs[0] if m.codecs else None
            pt_list = str(shown.payload_type) if shown else (m.formats[0] if m.formats else "0")
        else:
            shown = codec
            pt_list = str(codec.payload_type)
            rtx_pt = by_mid[m.mid].rtx_payload_type if mode == "send" else None
            if rtx_pt is not None:
                pt_list += f" {rtx_pt}"
        lines += [
            f"m={m.kind} {port} UDP/TLS/RTP/SAVPF {pt_list}",
            f"c=IN {ip_version} {host}",
            f"a=mid:{m.mid}",
            "a=sendonly" if mode == "send" else "a=inactive",
            f"a=ice-ufrag:{ice_ufrag}",
            f"a=ice-pwd:{ice_pwd}",
            f"a=fingerprint:sha-256 {fp}",
            "a=setup:passive",
            "a=rtcp-mux",
        ]
        if m.rtcp_rsize:
            lines.append("a=rtcp-rsize")
        if shown is not None:
            lines.append(f"a=rtpmap:{shown.payload_type} {shown.rtpmap()}")
            fb = shown.rtcp_fb if mode == "send" else []
            lines += [f"a=rtcp-fb:{shown.payload_type} {f}" for f in fb]
            if mode == "send" and shown.fmtp:
                lines.append(f"a=fmtp:{shown.payload_type} {shown.fmtp_line()}")
        if mode == "send":
            nt = by_mid[m.mid]
            track_id = f"{m.kind}-{nt.ssrc:08x}"
            if nt.rtx_payload_type is not None:
                lines += [f"a=rtpmap:{nt.rtx_payload_type} rtx/{nt.codec.clock_rate}",
                          f"a=fmtp:{nt.rtx_payload_type} apt={nt.payload_type}"]
            lines.append(f"a=msid:{stream_id} {track_id}")
            if nt.rtx_ssrc is not None:
                lines.append(f"a=ssrc-group:FID {nt.ssrc} {nt.rtx_ssrc}")
            for ssrc in (nt.ssrc, nt.rtx_ssrc):
                if ssrc is not None:
                    lines += [f"a=ssrc:{ssrc} cname:{cname}",
                              f"a=ssrc:{ssrc} msid:{stream_id} {track_id}"]
        lines += candidate_lines(candidates, tcp_candidates)
    return Answer(sdp="\r\n".join(lines) + "\r\n", tracks=negotiated, warnings=warnings)


#: ICE type preference of our ICE-TCP host candidates (UDP host candidates use 126): below
#: UDP host and server-reflexive (100) candidates, above relayed ones (0), so a browser
#: that can reach the UDP port uses it (RFC 6544 §4.2 asks for UDP to be preferred).
TCP_TYPE_PREFERENCE = 90


def candidate_lines(candidates: Sequence[tuple[str, int]],
                    tcp_candidates: Sequence[tuple[str, int]] = ()) -> list[str]:
    """The ``a=candidate`` lines of every media section, then ``a=end-of-candidates``.

    UDP host candidates first (priority 2130706431 - index: type preference 126, local
    preference 65535); then ICE-TCP ones, ``tcptype passive`` (RFC 6544: the server only
    accepts connections), priority = type preference :data:`TCP_TYPE_PREFERENCE`, local
    preference 2^13 × 4 (passive) + 8191 - index, component 1.
    """
    lines = []
    for index, (c_host, c_port) in enumerate(candidates):
        priority = 2130706431 - index
        lines.append(f"a=candidate:{index + 1} 1 udp {priority} {c_host} {c_port} typ host")
    for index, (c_host, c_port) in enumerate(tcp_candidates):
        local = (1 << 13) * 4 + 8191 - index
        priority = (TCP_TYPE_PREFERENCE << 24) | (local << 8) | 255
        lines.append(f"a=candidate:{1001 + index} 1 tcp {priority} {c_host} {c_port} "
                     "typ host tcptype passive")
    lines.append("a=end-of-candidates")
    return lines


@dataclass(frozen=True)
class SdpFrag:
    """An ``application/trickle-ice-sdpfrag`` body (RFC 8840), as WHEP PATCHes it."""

    ice_ufrag: str | None
    ice_pwd: str | None
    #: ``a=candidate:`` values (without the ``a=``), in order
    candidates: tuple[str, ...]
    end_of_candidates: bool
    mids: tuple[str, ...]


_ICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
MAX_SDPFRAG_BYTES = 16 * 1024


def _ice_chars(value: str, what: str, low: int, high: int) -> str:
    if not low <= len(value) <= high or not set(value) <= _ICE_CHARS:
        raise SdpError(f"{what} must be {low}..{high} ice-chars (RFC 8839), got {value!r}")
    return value


def parse_sdpfrag(text: str) -> SdpFrag:
    """Parse a trickle-ice-sdpfrag (WHEP PATCH body). Raises SdpError naming the problem.

    Session-level and media-level lines are accepted alike (clients put ufrag/pwd in
    either); two different ufrags (or pwds) are an error, as is a pwd without a ufrag.
    ufrag: 4..256 ice-chars, pwd: 22..256 (RFC 8839 §5.4).
    """
    if len(text) > MAX_SDPFRAG_BYTES:
        raise SdpError(f"sdpfrag larger than {MAX_SDPFRAG_BYTES} bytes")
    ufrags: set[str] = set()
    pwds: set[str] = set()
    candidates: list[str] = []
    mids: list[str] = []
    end = False
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or line[0] not in "vosiucbtrzkamp":
            raise SdpError(f"sdpfrag line {number} is not an SDP line: {line[:40]!r}")
        if not line.startswith("a="):
            continue  # m=, c=, … describe what the candidates belong to
        name, _, value = line[2:].partition(":")
        value = value.strip()
        if name == "ice-ufrag":
            ufrags.add(_ice_chars(value, "a=ice-ufrag", 4, 256))
        elif name == "ice-pwd":
            pwds.add(_ice_chars(value, "a=ice-pwd", 22, 256))
        elif name == "candidate":
            if len(value.split()) < 8:
                raise SdpError(f"sdpfrag line {number}: malformed candidate {value[:60]!r}")
            candidates.append(f"candidate:{value}")
        elif name == "end-of-candidates":
            end = True
        elif name == "mid":
            mids.append(value)
    if len(ufrags) > 1 or len(pwds) > 1:
        raise SdpError("sdpfrag has more than one ice-ufrag/ice-pwd")
    ufrag = next(iter(ufrags), None)
    pwd = next(iter(pwds), None)
    if pwd is not None and ufrag is None:
        raise SdpError("sdpfrag has an a=ice-pwd without an a=ice-ufrag")
    return SdpFrag(ufrag, pwd, tuple(candidates), end, tuple(mids))


def build_restart_sdpfrag(*, ice_ufrag: str, ice_pwd: str, mids: Sequence[str],
                          kinds: Sequence[str], candidates: Sequence[tuple[str, int]],
                          tcp_candidates: Sequence[tuple[str, int]] = ()) -> str:
    """The server's answer to an ICE restart (RFC 9725 §4.3.2 / WHEP): ``a=ice-lite``, the
    new ufrag/pwd, and for the (bundled) first media section its candidates again."""
    lines = ["a=ice-lite", f"a=ice-ufrag:{ice_ufrag}", f"a=ice-pwd:{ice_pwd}"]
    if mids:
        lines.append("a=group:BUNDLE " + " ".join(mids))
        kind = kinds[0] if kinds else "video"
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mids[0]}"]
        lines += candidate_lines(candidates, tcp_candidates)
    return "\r\n".join(lines) + "\r\n"
