"""``GET /api/v3/process/{id}/probe``: what the inputs of a process carry (Core's ``Probe``).

As Core's restream ``Probe``, FFmpeg runs with the process's global options and its inputs
(placeholders and references resolved) and **no output**: it opens every input, prints
``Input #n`` / ``Stream #n:m`` and exits. The stderr lines are the ``log``; the input streams,
parsed like Core's ``ffmpeg/prelude`` (the ``Stream #`` lines by :mod:`.streams`), are the
``streams`` (Core's ``ProbeIO`` fields: ``url``, ``format``, ``index``, ``stream``,
``language``, ``type``, ``codec``, ``coder``, ``bitrate_kbps``, ``duration_sec``, ``fps``,
``pix_fmt``, ``width``, ``height``, ``sampling_hz``, ``layout``, ``channels``).

* :func:`parse_probe` is sans-IO (lines in, result out).
* :func:`run_probe` is the trio shell: FFmpeg runs as a :func:`~trio_core.ffmpeg.child.spawn`
  child of the calling task (parent-death signal, own process group, pid record; no thread:
  the event loop keeps serving), bounded by ``timeout`` seconds (Core: 20 s) after
  which it is killed and ``"probe timed out after N s"`` is logged; at most :data:`MAX_LOG_LINES`
  lines of at most :data:`~trio_core.ffmpeg.progress.MAX_LINE` characters are kept. Cancelling the
  caller (a client that leaves) kills FFmpeg, reaps it and closes its pipe before the
  cancellation propagates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import trio

from trio_core.ffmpeg.child import DEVNULL, PIPE, Child, PidRecorder, spawn, wait_or_stop
from trio_core.ffmpeg.progress import MAX_LINE
from trio_core.ffmpeg.streams import channels_of, parse_stream

__all__ = ["MAX_LOG_LINES", "PROBE_TIMEOUT", "parse_probe", "probe_command", "run_probe"]

PROBE_TIMEOUT = 20.0
MAX_LOG_LINES = 1000

_LEVEL_RE = re.compile(r"^\[(?:quiet|panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_FORMAT_RE = re.compile(r"^(Input|Output) #([0-9]+), (.*?), (from|to) '([^']+)")
_DURATION_RE = re.compile(r"Duration: ([0-9]+):([0-9]+):([0-9]+)\.([0-9]+)")
_LANGUAGE_RE = re.compile(r"^[a-z]{3}$")
_PROBED_KINDS = ("video", "audio", "subtitle")


def _number(value: float) -> int | float:
    """Core's ``toNumber``: integral values as integers, else three decimals."""
    return int(value) if value == int(value) else round(value, 3)


def parse_probe(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The input streams found in FFmpeg's stderr ``lines`` (Core's ``prelude.Parse``)."""
    streams: list[dict[str, Any]] = []
    section = ""
    fmt = ""
    address = ""
    duration = 0.0
    in_mapping = False
    for raw in lines:
        line = _LEVEL_RE.sub("", raw, count=1)
        if line.startswith("Stream mapping:"):
            in_mapping = True
            continue
        if in_mapping:
            if re.match(r"^\s+Stream #[0-9]+:[0-9]+", line):
                continue
            in_mapping = False
            continue
        if m := _FORMAT_RE.match(line):
            section, fmt, address, duration = m.group(1), m.group(3), m.group(5), 0.0
            continue
        if m := _DURATION_RE.search(line):
            duration = (int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
                        + int(m.group(4)) / 100)
            continue
        parsed = parse_stream(line)
        if parsed is None or section != "Input" or parsed.kind not in _PROBED_KINDS:
            continue
        stream: dict[str, Any] = {
            "url": address, "format": fmt, "index": parsed.file, "stream": parsed.index,
            "language": parsed.language if _LANGUAGE_RE.match(parsed.language) else "und",
            "type": parsed.kind, "codec": parsed.codec, "coder": "",
            "bitrate_kbps": _number(parsed.bitrate_kbps) if parsed.bitrate_kbps else 0,
            "duration_sec": _number(duration), "fps": 0, "pix_fmt": "", "width": 0, "height": 0,
            "sampling_hz": 0, "layout": "", "channels": 0,
        }
        if parsed.kind == "video":
            if parsed.pix_fmt and parsed.width:
                stream.update(pix_fmt=parsed.pix_fmt, width=parsed.width, height=parsed.height)
            if parsed.fps is not None:
                stream["fps"] = _number(parsed.fps)
        elif parsed.kind == "audio" and parsed.sample_rate and parsed.layout:
            # the layout as printed ("5.1(side)"); channels only for a plain layout name
            stream.update(sampling_hz=parsed.sample_rate, layout=parsed.layout,
                          channels=channels_of(parsed.layout))
        streams.append(stream)
    return streams


class ProbeInput(Protocol):
    """An input of a process (:class:`trio_core.engine.process_config.IOConfig` is one)."""

    @property
    def address(self) -> str: ...

    @property
    def options(self) -> Sequence[str]: ...


class ProbeConfig(Protocol):
    """The resolved config of a process (:class:`trio_core.engine.process_config.ProcessConfig` is one)."""

    @property
    def options(self) -> Sequence[str]: ...

    @property
    def input(self) -> Sequence[ProbeInput]: ...


def probe_command(resolved: ProbeConfig, ffmpeg: str) -> list[str]:
    """The probe argv (Core's): binary, global options, then each input; no output."""
    argv = [ffmpeg, *resolved.options]
    for io in resolved.input:
        argv += [*io.options, "-i", io.address]
    return argv


async def run_probe(resolved: ProbeConfig, ffmpeg: str, *, timeout: float = PROBE_TIMEOUT,
                    record: PidRecorder | None = None, record_id: str = "") -> dict[str, Any]:
    """Probe the inputs of ``resolved``; Core's ``{"streams": [...], "log": [...]}``.

    FFmpeg is a :func:`~trio_core.ffmpeg.child.spawn` child (recorded in ``record`` as
    ``record_id`` while it runs); it is killed, reaped and its pipe closed before this returns
    or a cancellation propagates."""
    argv = probe_command(resolved, ffmpeg)
    log: list[str] = []
    buf = bytearray()

    def take(raw: bytes) -> None:
        line = raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip()
        if line.strip() and len(log) < MAX_LOG_LINES:
            log.append(line)

    async def read_all(stderr: trio.abc.ReceiveStream) -> None:
        while data := await stderr.receive_some(65536):
            buf.extend(data)
            while (end := min((p for p in (buf.find(b"\n"), buf.find(b"\r")) if p >= 0),
                              default=-1)) >= 0:
                take(bytes(buf[:end]))
                del buf[:end + 1]
            if len(buf) > MAX_LINE:
                take(bytes(buf))
                buf.clear()

    with trio.move_on_after(timeout) as scope:
        try:
            child = await spawn(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, record=record,
                                record_id=record_id)
        except OSError as exc:
            log.append(f"Failed to start FFmpeg ({argv[0]}): {exc.strerror or exc}")
        else:
            try:
                async with trio.open_nursery() as nursery:
                    assert child.stderr is not None
                    nursery.start_soon(read_all, child.stderr)
                    await wait_or_stop(child, _kill)
            finally:
                await child.aclose()
    if buf:
        take(bytes(buf))
    if scope.cancelled_caught:
        log.append(f"probe timed out after {timeout:g} s")
    return {"streams": parse_probe(log), "log": log}


async def _kill(child: Child) -> None:
    child.kill()
