"""The one parser of FFmpeg's ``Stream #N:M…`` lines (sans-IO).

FFmpeg describes every stream of its inputs and outputs in one line, e.g.::

    Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709,
        progressive), 1280x720 [SAR 1:1 DAR 16:9], 2983 kb/s, 25 fps, 25 tbr, 12800 tbn (default)
    Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp,
        128 kb/s (default)

(each on one line). :func:`parse_stream` turns one such line (a ``[level]`` prefix already
removed) into a :class:`Stream`, or None for any other line (the ``Stream mapping`` lines
``Stream #0:0 -> #0:0 (…)`` included, which :func:`parse_mapping` reads). The description
after ``<Kind>: `` is split on the commas outside parentheses/brackets (:func:`split_top`);
trailing dispositions (``(default)``, ``(forced)``, …) are taken off the last part. Each field
comes from the part that carries it: the codec and its profile from the first part, the pixel
format (and its ``(tv, bt709, progressive)`` detail, which names the field order) from the
second part of a video stream unless that is the size, the size (with SAR/DAR) from the first
``WxH`` part, ``N fps``/``N tbr``/``N kb/s``/``N Hz`` from the first part that is exactly
that, and the channel layout from the part after ``N Hz``.

The users — the progress prelude (:mod:`.progress`), the API probe (:mod:`.probe`) and the
WebRTC input probe (:mod:`.mediainfo`) — each map a :class:`Stream` onto their own shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHANNEL_LAYOUTS", "FIELD_ORDERS", "Stream", "StreamMapping", "channels_of",
           "parse_mapping", "parse_stream", "split_top"]

#: channel layout name -> number of channels (FFmpeg's names for the common layouts)
CHANNEL_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6,
                   "6.1": 7, "7.1": 8}
#: field orders FFmpeg names in a video stream's pixel format detail (interlaced video)
FIELD_ORDERS = ("top first", "bottom first", "top coded first", "bottom coded first")

_STREAM_RE = re.compile(
    r"^\s*Stream #(\d+):(\d+)(?:\[([^\]]*)\])?(?:\(([^)]*)\))?: (\w+): (.*)$"
)
_MAPPING_RE = re.compile(
    r"^\s*Stream #(\d+):(\d+)(?:\[[^\]]*\])? -> #(\d+):(\d+)(?:\[[^\]]*\])? \((.*)\)\s*$"
)
_DISPOSITIONS = ("default", "dub", "original", "comment", "lyrics", "karaoke", "forced",
                 "hearing impaired", "visual impaired", "clean effects", "attached pic",
                 "timed thumbnails", "non diegetic", "captions", "descriptions", "metadata",
                 "dependent", "still image", "multilayer")
_DISPOSITION_RE = re.compile(r"\s+\((" + "|".join(_DISPOSITIONS) + r")\)$")
_SIZE_RE = re.compile(r"^(\d+)x(\d+)")
_ASPECT_RE = re.compile(r"SAR (\d+:\d+) DAR (\d+:\d+)")
_FPS_RE = re.compile(r"^([\d.]+) fps$")
_TBR_RE = re.compile(r"^([\d.]+)(k?) tbr$")
_BITRATE_RE = re.compile(r"^(\d+) kb/s")
_RATE_RE = re.compile(r"^(\d+) Hz$")
_PROFILE_RE = re.compile(r"^\S+\s+\(([^)]*)\)")
_CHANNELS_RE = re.compile(r"^(\d+) channels")


def split_top(text: str) -> list[str]:
    """Split an FFmpeg stream description on commas outside parentheses/brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def channels_of(layout: str) -> int:
    """Channels of a layout name (``stereo`` 2, ``6 channels`` 6); 0 when unknown."""
    if layout in CHANNEL_LAYOUTS:
        return CHANNEL_LAYOUTS[layout]
    if m := _CHANNELS_RE.match(layout):
        return int(m.group(1))
    return 0


@dataclass(frozen=True)
class Stream:
    """One ``Stream #file:index`` line. Absent values are ``""``, 0 or None (see fields)."""

    file: int  # the N of "#N:M": input/output file index
    index: int  # the M: stream index within the file
    ident: str  # the container's stream id ("0x100" of "[0x100]"), "" when not shown
    language: str  # "eng" of "(eng)", "" when not shown
    kind: str  # "video", "audio", "subtitle", "data", "attachment" (lower case)
    detail: str  # everything after "<Kind>: "
    parts: tuple[str, ...]  # ``detail`` split by :func:`split_top`, dispositions removed
    dispositions: tuple[str, ...]  # ("default",), ("default", "forced"), …
    codec: str  # "h264", "aac", …
    profile: str  # "High", "Main 10", "LC", … ("" when not given)
    pix_fmt: str = ""  # video: "yuv420p10le"
    pix_detail: str = ""  # video: "tv, bt709, progressive", "top first", …
    width: int = 0
    height: int = 0
    sar: str = ""  # "1:1"
    dar: str = ""  # "16:9"
    fps: float | None = None
    tbr: float | None = None
    bitrate_kbps: float | None = None
    sample_rate: int | None = None  # audio, Hz
    layout: str = ""  # audio, as printed: "stereo", "5.1(side)", "6 channels"

    @property
    def layout_name(self) -> str:
        """The layout without its detail: ``5.1(side)`` -> ``5.1``."""
        return self.layout.split("(", 1)[0].strip()

    @property
    def channels(self) -> int:
        """Channels of :attr:`layout_name` (0 when not known)."""
        return channels_of(self.layout_name)

    @property
    def field_order(self) -> str:
        """``progressive``, ``top first``, … as printed ("" when not given)."""
        for item in self.pix_detail.lower().split(","):
            item = item.strip()
            for order in ("progressive", *FIELD_ORDERS):
                if item == order or item.startswith(order + " "):  # "top coded first (swapped)"
                    return order
        return ""

    @property
    def interlaced(self) -> bool | None:
        """True for a field order, False for ``progressive``, None when not given."""
        order = self.field_order
        return None if not order else order != "progressive"


def parse_stream(line: str) -> Stream | None:
    """The :class:`Stream` of one FFmpeg ``Stream #N:M…: <Kind>: …`` line, else None."""
    m = _STREAM_RE.match(line)
    if m is None:
        return None
    detail = m.group(6)
    parts = split_top(detail)
    dispositions: list[str] = []
    last = parts[-1]
    while d := _DISPOSITION_RE.search(last):
        dispositions.insert(0, d.group(1))
        last = last[:d.start()]
    parts[-1] = last
    kind = m.group(5).lower()
    head = parts[0]
    codec = head.split(" ", 1)[0]
    pm = _PROFILE_RE.match(head)
    profile = pm.group(1) if pm and "/" not in pm.group(1) else ""
    fields: dict[str, object] = {}
    if kind == "video" and len(parts) > 1 and not _SIZE_RE.match(parts[1]):
        name, _, rest = parts[1].partition("(")
        fields["pix_fmt"] = name.strip()
        fields["pix_detail"] = rest.rsplit(")", 1)[0].strip()
    rate_at = -1
    for i, part in enumerate(parts[1:], start=1):
        if "width" not in fields and (s := _SIZE_RE.match(part)):
            fields["width"], fields["height"] = int(s.group(1)), int(s.group(2))
            if a := _ASPECT_RE.search(part):
                fields["sar"], fields["dar"] = a.group(1), a.group(2)
        elif "sar" not in fields and (a := _ASPECT_RE.match(part)):
            fields["sar"], fields["dar"] = a.group(1), a.group(2)
        elif "fps" not in fields and (f := _FPS_RE.match(part)):
            fields["fps"] = float(f.group(1))
        elif "tbr" not in fields and (t := _TBR_RE.match(part)):
            fields["tbr"] = float(t.group(1)) * (1000 if t.group(2) else 1)
        elif "bitrate_kbps" not in fields and (b := _BITRATE_RE.match(part)):
            fields["bitrate_kbps"] = float(b.group(1))
        elif "sample_rate" not in fields and (r := _RATE_RE.match(part)):
            fields["sample_rate"] = int(r.group(1))
            rate_at = i
    if kind == "audio" and 0 < rate_at < len(parts) - 1:
        fields["layout"] = parts[rate_at + 1]
    return Stream(
        file=int(m.group(1)), index=int(m.group(2)), ident=m.group(3) or "",
        language=m.group(4) or "", kind=kind, detail=detail, parts=tuple(parts),
        dispositions=tuple(dispositions), codec=codec, profile=profile,
        **fields,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class StreamMapping:
    """One line under ``Stream mapping:``: ``Stream #0:0 -> #0:1 (h264 (native) -> h264
    (libx264))`` or ``Stream #1:0 -> #0:2 (copy)``."""

    input_file: int
    input_index: int
    output_file: int
    output_index: int
    detail: str  # inside the outer parentheses

    @property
    def coder(self) -> str:
        """``copy``, or the codec after ``->`` (``h264`` of ``… -> h264 (libx264)``)."""
        if self.detail.startswith("copy"):
            return "copy"
        _, _, right = self.detail.partition("->")
        return right.strip().split(" ", 1)[0] if right else ""


def parse_mapping(line: str) -> StreamMapping | None:
    """The :class:`StreamMapping` of a ``Stream #a:b -> #c:d (…)`` line, else None (filter
    graph lines such as ``Stream #0:0 (h264) -> scale:default`` included)."""
    m = _MAPPING_RE.match(line)
    if m is None:
        return None
    return StreamMapping(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)),
                         m.group(5))
