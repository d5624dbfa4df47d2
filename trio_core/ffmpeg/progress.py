"""Sans-IO parser of FFmpeg's stderr: progress, prelude (inputs/outputs) and log lines.

Feed raw stderr bytes with :meth:`ProgressParser.feed`; lines are split on ``\\r`` or ``\\n``.
Recognised, and *not* returned as log lines:

* classic stats lines ``frame=… fps=… q=… size=… time=… bitrate=… speed=…`` (also the
  audio-only form ``size=… time=…`` and ``Lsize=``), with or without a ``[level]`` prefix
  (``-loglevel level+info``);
* ``-progress pipe:2`` key=value blocks (``frame=2``, ``out_time_us=…``, … ``progress=continue``).

Every other non-empty line is returned by ``feed`` (for the log ring). Lines before the first
progress update form the *prelude* (first 100 + last 50 lines kept, datarhei style), from which
``Input #n``/``Output #n``, ``Stream #n:m`` and the ``Stream mapping`` (the last two by
:mod:`.streams`) are parsed into per-stream ``inputs``/``outputs`` entries (datarhei
``ProgressIO`` shape). :meth:`progress_json` returns the datarhei ``progress`` object. The parser has no notion of time; callers read
:attr:`advances` (count of updates in which frame/time/size grew) for stale detection.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trio_core.ffmpeg.streams import Stream, StreamMapping, parse_mapping, parse_stream

__all__ = ["MAX_LINE", "Fixed3", "ProgressParser", "core_number", "empty_progress",
           "parse_duration"]

MAX_LINE = 8192  # a "line" longer than this is cut (protects memory against binary garbage)

_LEVEL_RE = re.compile(r"^\[(?:quiet|panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_FIELD_RE = re.compile(r"(\w+)=\s*(\S+)")
_INPUT_RE = re.compile(r"^Input #(\d+), (.+?), from '(.*)':$")
_OUTPUT_RE = re.compile(r"^Output #(\d+), (.+?), to '(.*)':$")
_KV_RE = re.compile(r"^([a-z0-9_]+)=(\S*)$")
_PROGRESS_KEYS = {
    "frame", "fps", "bitrate", "total_size", "out_time_us", "out_time_ms", "out_time",
    "dup_frames", "drop_frames", "speed", "progress",
}
_STREAM_Q_RE = re.compile(r"^stream_(\d+)_(\d+)_q$")
_SIZE_RE = re.compile(r"^([\d.]+)\s*([kKMG]i?B|B)?$")
_RATE_RE = re.compile(r"^([\d.]+)\s*([kMG]?)bits/s$")


def parse_duration(text: str) -> float | None:
    """``[-]HH:MM:SS.cc`` -> seconds; None for ``N/A`` or garbage."""
    neg = text.startswith("-")
    if neg:
        text = text[1:]
    parts = text.split(":")
    if len(parts) != 3:
        return None
    try:
        value = int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None
    return -value if neg else value


def _number(text: str) -> float | None:
    try:
        value = float(text.rstrip("x"))
    except ValueError:
        return None
    return value if value == value else None


def _size_kb(text: str) -> float | None:
    m = _SIZE_RE.match(text)
    if not m:
        return None
    value, unit = float(m.group(1)), (m.group(2) or "kB")
    factor = {"B": 1 / 1024, "kB": 1.0, "KiB": 1.0, "KB": 1.0, "MB": 1024.0, "MiB": 1024.0,
              "GB": 1024.0 * 1024, "GiB": 1024.0 * 1024}.get(unit, 1.0)
    return value * factor


def _rate_kbit(text: str) -> float | None:
    m = _RATE_RE.match(text)
    if not m:
        return None
    return float(m.group(1)) * {"": 0.001, "k": 1.0, "M": 1000.0, "G": 1e6}[m.group(2)]


class Fixed3(float):
    """A float that Core writes with exactly three decimals (Go ``fmt.Sprintf("%.3f")``).

    It is a plain float for Python code; :mod:`trio_core.http.go_json` renders it as ``25.000``
    in responses. Non-finite values become 0 (JSON has no NaN/Infinity).
    """

    def __new__(cls, value: float = 0.0) -> Fixed3:
        value = float(value)
        if not math.isfinite(value):
            value = 0.0
        return super().__new__(cls, round(value, 3))


def core_number(value: float) -> int | Fixed3:
    """Core's ``toNumber``: an integral value as an int, else three decimals."""
    value = float(value)
    if not math.isfinite(value):
        return 0
    if value == int(value):
        return int(value)
    return Fixed3(value)


@dataclass
class StreamInfo:
    """One stream of an input or output file, from the prelude."""

    index: int
    stream: int
    kind: str
    codec: str = ""
    coder: str = ""
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    bitrate_kbit: float = 0.0
    sampling_hz: int = 0
    layout: str = ""
    channels: int = 0
    frame: int = 0
    q: float = 0.0

    def to_json(self, io_id: str, address: str, fmt: str) -> dict[str, Any]:
        """Core's ``ProgressIO``: every field it always emits (rates as :class:`Fixed3`, ``q``
        on every stream), and ``pix_fmt``/``width``/``height``/``sampling_hz``/``layout``/
        ``channels`` only when set (Core's ``omitempty``)."""
        out: dict[str, Any] = {
            "id": io_id, "address": address, "index": self.index, "stream": self.stream,
            "format": fmt, "type": self.kind, "codec": self.codec, "coder": self.coder,
            "frame": self.frame, "keyframe": 0,
            "framerate": {"min": Fixed3(0), "max": Fixed3(0), "avg": Fixed3(0)},
            "fps": Fixed3(self.fps), "packet": 0, "pps": Fixed3(0), "size_kb": 0,
            "bitrate_kbit": Fixed3(self.bitrate_kbit), "extradata_size_bytes": 0,
            "q": Fixed3(self.q),
        }
        optional: dict[str, Any] = {
            "pix_fmt": self.pix_fmt, "width": self.width, "height": self.height,
            "sampling_hz": self.sampling_hz, "layout": self.layout, "channels": self.channels,
        }
        out.update({k: v for k, v in optional.items() if v})
        out["avstream"] = None
        return out


@dataclass
class FileInfo:
    index: int
    format: str
    address: str
    streams: list[StreamInfo] = field(default_factory=list)


def _stream_info(parsed: Stream) -> StreamInfo:
    """The prelude entry of a parsed ``Stream #`` line."""
    return StreamInfo(
        index=parsed.file, stream=parsed.index, kind=parsed.kind, codec=parsed.codec,
        coder=parsed.codec, pix_fmt=parsed.pix_fmt, width=parsed.width, height=parsed.height,
        fps=parsed.fps or 0.0, bitrate_kbit=parsed.bitrate_kbps or 0.0,
        sampling_hz=parsed.sample_rate or 0, layout=parsed.layout_name,
        channels=parsed.channels,
    )


class ProgressParser:
    """Incremental stderr parser for one FFmpeg run (create a new one per run).

    ``inputs``/``outputs``: ``(id, address)`` of the IOs by file index (the configured ones,
    then the extra legs appended by hooks), used to label the per-stream entries; a file
    beyond the list keeps the address FFmpeg printed and gets the id ``extra``.
    """

    PRELUDE_HEAD = 100
    PRELUDE_TAIL = 50

    def __init__(self, inputs: Sequence[tuple[str, str]] = (),
                 outputs: Sequence[tuple[str, str]] = ()) -> None:
        self._io_ids = {"input": list(inputs), "output": list(outputs)}
        self._buf = bytearray()
        self._version = 0  # lines seen; progress_json() is cached per version
        self._cached: tuple[int, dict[str, Any]] | None = None
        self._section: str | None = None
        self._files: dict[str, dict[int, FileInfo]] = {"input": {}, "output": {}}
        self._current: FileInfo | None = None
        self._in_mapping = False
        self._prelude_head: list[str] = []
        self._prelude_tail: list[str] = []
        self._prelude_dropped = 0
        self._kv: dict[str, str] = {}
        self._pending_coders: dict[tuple[int, int], str] = {}
        #: True once the first progress update was seen (the prelude is complete).
        self.started = False
        #: number of progress updates parsed
        self.updates = 0
        #: number of progress updates in which frame (or, without video, time/size) grew
        self.advances = 0
        self.frame = 0
        self.fps = 0.0
        self.q = 0.0
        self.size_kb = 0.0
        self.time = 0.0
        self.bitrate_kbit = 0.0
        self.speed = 0.0
        self.drop = 0
        self.dup = 0
        self._qs: list[float] = []

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[str]:
        """Consume stderr bytes; returns the complete non-progress lines (log lines)."""
        self._buf += data
        out: list[str] = []
        while True:
            positions = [p for p in (self._buf.find(b"\n"), self._buf.find(b"\r")) if p >= 0]
            if not positions:
                break
            end = min(positions)
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._line(raw, out)
        if len(self._buf) > MAX_LINE:
            raw = bytes(self._buf[:MAX_LINE])
            del self._buf[:MAX_LINE]
            self._line(raw, out)
        return out

    def close(self) -> list[str]:
        """End of stream: the pending partial line (if any) as a log line."""
        out: list[str] = []
        if self._buf:
            raw = bytes(self._buf)
            self._buf.clear()
            self._line(raw, out)
        return out

    def _line(self, raw: bytes, out: list[str]) -> None:
        self._version += 1  # every line may change the prelude, the files or the progress
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line.strip():
            return
        body = _LEVEL_RE.sub("", line, count=1)
        kv = _KV_RE.match(body)
        if kv and (kv.group(1) in _PROGRESS_KEYS or _STREAM_Q_RE.match(kv.group(1))):
            self._kv[kv.group(1)] = kv.group(2)
            if kv.group(1) == "progress":
                self._commit_kv()
            return
        stripped = body.lstrip()
        if (stripped.startswith(("frame=", "size=", "Lsize="))) and "time=" in stripped:
            self._classic(stripped)
            return
        if not self.started:
            self._add_prelude(line)
            self._prelude_line(body)
        out.append(line)

    def _add_prelude(self, line: str) -> None:
        if len(self._prelude_head) < self.PRELUDE_HEAD:
            self._prelude_head.append(line)
            return
        self._prelude_tail.append(line)
        if len(self._prelude_tail) > self.PRELUDE_TAIL:
            self._prelude_tail.pop(0)
            self._prelude_dropped += 1

    def _prelude_line(self, body: str) -> None:
        if m := _INPUT_RE.match(body):
            self._current = FileInfo(int(m.group(1)), m.group(2), m.group(3))
            self._files["input"][self._current.index] = self._current
            self._section, self._in_mapping = "input", False
            return
        if m := _OUTPUT_RE.match(body):
            self._current = FileInfo(int(m.group(1)), m.group(2), m.group(3))
            self._files["output"][self._current.index] = self._current
            self._section, self._in_mapping = "output", False
            return
        if body.startswith("Stream mapping:"):
            self._in_mapping, self._current = True, None
            return
        if self._in_mapping and (mapping := parse_mapping(body)) is not None:
            self._mapping(mapping)
            return
        if self._current is not None and (parsed := parse_stream(body)) is not None:
            info = _stream_info(parsed)
            for existing in self._current.streams:
                if existing.stream == info.stream:
                    return
            coder = self._pending_coders.get((info.index, info.stream)) if self._section == "output" else None
            if coder:
                info.coder = coder
            self._current.streams.append(info)
            return
        if (self._current is not None and self._section == "output"
                and (m := re.match(r"^\s*encoder\s*:\s*\S+\s+(\S+)$", body))
                and self._current.streams):
            stream = self._current.streams[-1]
            if not self._pending_coders.get((stream.index, stream.stream)):
                stream.coder = m.group(1)

    def _mapping(self, mapping: StreamMapping) -> None:
        coder = mapping.coder
        out_key = (mapping.output_file, mapping.output_index)
        self._pending_coders[out_key] = coder
        for f in self._files["output"].values():
            for s in f.streams:
                if (s.index, s.stream) == out_key and coder:
                    s.coder = coder

    # -- progress updates -------------------------------------------------------------------

    def _classic(self, line: str) -> None:
        fields = _FIELD_RE.findall(line)
        values: dict[str, str] = {}
        qs: list[float] = []
        for key, value in fields:
            if key == "q":
                q = _number(value)
                if q is not None:
                    qs.append(q)
            else:
                values.setdefault(key, value)
        frame = int(values["frame"]) if values.get("frame", "").isdigit() else None
        size = values.get("size", values.get("Lsize", "N/A"))
        self._update(
            frame=frame,
            fps=_number(values.get("fps", "")),
            qs=qs,
            size_kb=_size_kb(size),
            time=parse_duration(values.get("time", "N/A")),
            bitrate=_rate_kbit(values.get("bitrate", "N/A")),
            speed=_number(values.get("speed", "")),
            drop=int(values["drop"]) if values.get("drop", "").isdigit() else None,
            dup=int(values["dup"]) if values.get("dup", "").isdigit() else None,
        )

    def _commit_kv(self) -> None:
        kv, self._kv = self._kv, {}
        frame = int(kv["frame"]) if kv.get("frame", "").isdigit() else None
        qs: list[float] = []
        for key in sorted(k for k in kv if _STREAM_Q_RE.match(k)):
            q = _number(kv[key])
            if q is not None:
                qs.append(q)
        time: float | None = None
        if kv.get("out_time_us", "").lstrip("-").isdigit():
            time = int(kv["out_time_us"]) / 1e6
        elif "out_time" in kv:
            time = parse_duration(kv["out_time"])
        size = None
        if kv.get("total_size", "").isdigit():
            size = int(kv["total_size"]) / 1024
        self._update(
            frame=frame, fps=_number(kv.get("fps", "")), qs=qs, size_kb=size, time=time,
            bitrate=_rate_kbit(kv.get("bitrate", "N/A")), speed=_number(kv.get("speed", "")),
            drop=int(kv["drop_frames"]) if kv.get("drop_frames", "").isdigit() else None,
            dup=int(kv["dup_frames"]) if kv.get("dup_frames", "").isdigit() else None,
        )

    def _update(self, *, frame: int | None, fps: float | None, qs: list[float],
                size_kb: float | None, time: float | None, bitrate: float | None,
                speed: float | None, drop: int | None, dup: int | None) -> None:
        self.started = True
        self.updates += 1
        advanced = False
        if frame is not None and frame > self.frame:
            advanced = True
        elif not self.frame and not frame:
            advanced = bool((time is not None and time > self.time)
                            or (size_kb is not None and size_kb > self.size_kb))
        if advanced:
            self.advances += 1
        if frame is not None:
            self.frame = frame
        if fps is not None:
            self.fps = fps
        if qs:
            self.q = qs[0]
            self._qs = qs
        if size_kb is not None:
            self.size_kb = size_kb
        if time is not None:
            self.time = time
        if bitrate is not None:
            self.bitrate_kbit = bitrate
        if speed is not None:
            self.speed = speed
        if drop is not None:
            self.drop = drop
        if dup is not None:
            self.dup = dup
        self._apply_stream_counters()

    def _apply_stream_counters(self) -> None:
        """Per-output-stream values we can know from FFmpeg's summary line.

        ``frame=``/``fps=`` count the first video output stream; the ``q=`` values are one per
        video output stream, in output order.
        """
        video = [s for idx in sorted(self._files["output"])
                 for s in self._files["output"][idx].streams if s.kind == "video"]
        for i, stream in enumerate(video):
            if i < len(self._qs):
                stream.q = self._qs[i]
        if video:
            video[0].frame = self.frame
            video[0].fps = self.fps

    # -- results ----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Lines seen so far: the prelude and progress change only when this does."""
        return self._version

    @property
    def prelude(self) -> list[str]:
        """First 100 and last 50 lines before progress started (with a truncation marker)."""
        if self._prelude_dropped:
            return [*self._prelude_head, f"... truncated {self._prelude_dropped} lines ...",
                    *self._prelude_tail]
        return [*self._prelude_head, *self._prelude_tail]

    def _io_json(self, kind: str) -> list[dict[str, Any]]:
        ids = self._io_ids[kind]
        out: list[dict[str, Any]] = []
        for idx in sorted(self._files[kind]):
            f = self._files[kind][idx]
            io_id, address = ids[idx] if idx < len(ids) else ("extra", f.address)
            for s in f.streams:
                out.append(s.to_json(io_id, address or f.address, f.format))
        return out

    def progress_json(self) -> dict[str, Any]:
        """The datarhei ``progress`` object (numbers; floats rounded to 3 decimals).

        Built once per fed line and then shared (the API lists every process many times per
        progress tick): callers must not mutate it.
        """
        cached = self._cached
        if cached is not None and cached[0] == self._version:
            return cached[1]
        progress = self._build_progress_json()
        self._cached = (self._version, progress)
        return progress

    def _build_progress_json(self) -> dict[str, Any]:
        return {
            "inputs": self._io_json("input"),
            "outputs": self._io_json("output"),
            "frame": self.frame,
            "packet": 0,
            "fps": core_number(self.fps),
            "q": core_number(self.q),
            "size_kb": int(self.size_kb),
            "time": core_number(self.time),
            "bitrate_kbit": core_number(self.bitrate_kbit),
            "speed": core_number(self.speed),
            "drop": self.drop,
            "dup": self.dup,
        }


def empty_progress() -> dict[str, Any]:
    """The ``progress`` object of a process that is not running (shared: do not mutate)."""
    return _EMPTY.progress_json()


_EMPTY = ProgressParser()
