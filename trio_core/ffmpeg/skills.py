"""FFmpeg skills: what the FFmpeg in use can do, in Core v16's ``GET /api/v3/skills`` shape.

Sans-IO parsers (``parse_version``, ``parse_codecs``, ``parse_filters``, ``parse_formats``,
``parse_devices``, ``parse_protocols``, ``parse_hwaccels``) turn the text of ``ffmpeg -version``,
``-codecs``, ``-filters``, ``-formats``, ``-devices``, ``-protocols``, ``-hwaccels`` into the
JSON Core answers with (same line patterns as Core's ``ffmpeg/skills``). ``encoders`` /
``decoders`` of a codec are ``null`` when it has none, as in Core; every list the API always
emits is a list. The hardware inside ``devices[].devices`` (ALSA capture PCMs, V4L2 devices,
framebuffers) comes from :mod:`trio_core.ffmpeg.devices`.

:func:`probe_skills` runs the seven FFmpeg calls (and the device helpers) one after the other as
:func:`~trio_core.ffmpeg.child.run_process` children — parent-death signal, own process group,
pid record — on the event loop (no thread), each bounded by :data:`PROBE_TIMEOUT`; a call that
fails or times out contributes nothing (logged). Cancelling it kills and reaps the running
child first. :class:`SkillsCache` caches the result (probed on first use and on ``reload``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import trio

from trio_core.ffmpeg.child import DEVNULL, PidRecorder, run_process
from trio_core.ffmpeg.devices import list_devices

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0  # seconds per FFmpeg call

# Core's patterns, widened for newer FFmpeg: an "n" before the version (git builds), two flag
# columns in -filters (FFmpeg >= 7) and a third ("d" = device) in -formats (FFmpeg >= 8)
_RE_VERSION = re.compile(r"^ffmpeg version n?([0-9]+\.[0-9]+(\.[0-9]+)?)")
_RE_COMPILER = re.compile(r"(?m)^\s*built with (.*)$")
_RE_CONFIGURATION = re.compile(r"(?m)^\s*configuration: (.*)$")
_RE_LIBRARY = re.compile(
    r"(?m)^\s*(lib(?:[a-z]+))\s+([0-9]+\.\s*[0-9]+\.\s*[0-9]+) /\s+([0-9]+\.\s*[0-9]+\.\s*[0-9]+)"
)
_RE_FILTER = re.compile(r"^\s[TSC.]{2,3} ([0-9A-Za-z_]+)\s+\S+\s+(.*)$")
_RE_CODEC = re.compile(
    r"^\s([D.])([E.])([VAS]).{3} ([0-9A-Za-z_]+)\s+(.*?)(?:\(decoders:([^\)]+)\))?\s?"
    r"(?:\(encoders:([^\)]+)\))?$"
)
_RE_FORMAT = re.compile(r"^\s([D ])([E ])[d ]? ([0-9A-Za-z_,]+)\s+(.*?)$")
_RE_HWACCEL = re.compile(r"^[A-Za-z0-9]+$")


def parse_version(text: str) -> dict[str, Any]:
    """``ffmpeg -version`` -> ``{"version", "compiler", "configuration", "libraries"}``."""
    version = ""
    match = _RE_VERSION.search(text)
    if match:
        version = match.group(1) + ("" if match.group(2) else ".0")
    compiler = _RE_COMPILER.search(text)
    configuration = _RE_CONFIGURATION.search(text)
    return {
        "version": version,
        "compiler": compiler.group(1) if compiler else "",
        "configuration": configuration.group(1) if configuration else "",
        "libraries": [
            {"name": m.group(1), "compiled": m.group(2), "linked": m.group(3)}
            for m in _RE_LIBRARY.finditer(text)
        ],
    }


def parse_filters(text: str) -> list[dict[str, str]]:
    """``ffmpeg -filters`` -> ``[{"id", "name"}]``."""
    out = []
    for line in text.splitlines():
        match = _RE_FILTER.match(line)
        if match:
            out.append({"id": match.group(1), "name": match.group(2) or ""})
    return out


def parse_codecs(text: str) -> dict[str, list[dict[str, Any]]]:
    """``ffmpeg -codecs`` -> ``{"audio", "video", "subtitle"}`` lists of codecs."""
    codecs: dict[str, list[dict[str, Any]]] = {"audio": [], "video": [], "subtitle": []}
    kinds = {"V": "video", "A": "audio", "S": "subtitle"}
    for line in text.splitlines():
        match = _RE_CODEC.match(line)
        if not match:
            continue
        can_decode, can_encode, kind, codec_id, name, decoders, encoders = match.groups()
        codec: dict[str, Any] = {
            "id": codec_id, "name": name.strip(), "encoders": None, "decoders": None,
        }
        if can_decode == "D":
            codec["decoders"] = decoders.strip().split(" ") if decoders else [codec_id]
        if can_encode == "E":
            codec["encoders"] = encoders.strip().split(" ") if encoders else [codec_id]
        codecs[kinds[kind]].append(codec)
    return codecs


def _parse_muxer_table(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    demuxers, muxers = [], []
    for line in text.splitlines():
        match = _RE_FORMAT.match(line)
        if not match:
            continue
        entry = (match.group(3).split(",")[0], match.group(4))
        if match.group(1) == "D":
            demuxers.append(entry)
        if match.group(2) == "E":
            muxers.append(entry)
    return demuxers, muxers


def parse_formats(text: str) -> dict[str, list[dict[str, str]]]:
    """``ffmpeg -formats`` -> ``{"demuxers", "muxers"}`` lists of ``{"id", "name"}``."""
    demuxers, muxers = _parse_muxer_table(text)
    return {
        "demuxers": [{"id": i, "name": n} for i, n in demuxers],
        "muxers": [{"id": i, "name": n} for i, n in muxers],
    }


def parse_devices(
    text: str, hardware: Callable[[str], list[dict[str, str]]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``ffmpeg -devices`` -> ``{"demuxers", "muxers"}`` of ``{"id", "name", "devices"}``;
    ``hardware(format_id)`` lists a format's devices (none when not given)."""
    demuxers, muxers = _parse_muxer_table(text)
    found: dict[str, list[dict[str, str]]] = {}

    def devices(format_id: str) -> list[dict[str, str]]:
        if hardware is None:
            return []
        if format_id not in found:
            found[format_id] = hardware(format_id)
        return [dict(d) for d in found[format_id]]

    return {
        "demuxers": [{"id": i, "name": n, "devices": devices(i)} for i, n in demuxers],
        "muxers": [{"id": i, "name": n, "devices": devices(i)} for i, n in muxers],
    }


def parse_protocols(text: str) -> dict[str, list[dict[str, str]]]:
    """``ffmpeg -protocols`` -> ``{"input", "output"}`` lists of ``{"id", "name"}``."""
    protocols: dict[str, list[dict[str, str]]] = {"input": [], "output": []}
    mode = ""
    for line in text.splitlines():
        if line == "Input:":
            mode = "input"
        elif line == "Output:":
            mode = "output"
        elif mode:
            name = line.strip()
            protocols[mode].append({"id": name, "name": name})
    return protocols


def parse_hwaccels(text: str) -> list[dict[str, str]]:
    """``ffmpeg -hwaccels`` -> ``[{"id", "name"}]``."""
    out = []
    started = False
    for line in text.splitlines():
        if line == "Hardware acceleration methods:":
            started = True
        elif started and _RE_HWACCEL.match(line):
            out.append({"id": line.strip(), "name": line.strip()})
    return out


def empty_skills() -> dict[str, Any]:
    """The skills document with every list Core always emits, all empty."""
    return {
        "ffmpeg": {"version": "", "compiler": "", "configuration": "", "libraries": []},
        "filter": [],
        "hwaccels": [],
        "codecs": {"audio": [], "video": [], "subtitle": []},
        "devices": {"demuxers": [], "muxers": []},
        "formats": {"demuxers": [], "muxers": []},
        "protocols": {"input": [], "output": []},
    }


async def _run(binary: str, flag: str, record: PidRecorder | None) -> str:
    # Core runs these with an empty environment; "-hide_banner" keeps the tables parseable
    args = [binary, flag] if flag == "-version" else [binary, "-hide_banner", flag]
    try:
        with trio.fail_after(PROBE_TIMEOUT):
            result = await run_process(args, stdin=DEVNULL, capture_stdout=True,
                                       capture_stderr=True, env={}, record=record,
                                       record_id=f"skills {flag}")
    except OSError as exc:
        log.warning("skills: %s %s failed: %s", binary, flag, exc)
        return ""
    except trio.TooSlowError:
        log.warning("skills: %s %s failed: timed out after %g seconds", binary, flag,
                    PROBE_TIMEOUT)
        return ""
    assert result.stdout is not None and result.stderr is not None
    out = result.stdout if flag != "-version" else result.stdout + result.stderr
    return out.decode("utf-8", "replace")


async def probe_skills(binary: str, *, record: PidRecorder | None = None) -> dict[str, Any]:
    """Run FFmpeg seven times (and the device helpers) and parse everything."""
    skills = empty_skills()
    skills["ffmpeg"] = parse_version(await _run(binary, "-version", record))
    skills["filter"] = parse_filters(await _run(binary, "-filters", record))
    skills["hwaccels"] = parse_hwaccels(await _run(binary, "-hwaccels", record))
    skills["codecs"] = parse_codecs(await _run(binary, "-codecs", record))
    skills["formats"] = parse_formats(await _run(binary, "-formats", record))
    devices = await _run(binary, "-devices", record)
    demuxers, muxers = _parse_muxer_table(devices)
    hardware: dict[str, list[dict[str, str]]] = {}
    for format_id, _name in [*demuxers, *muxers]:
        if format_id not in hardware:
            hardware[format_id] = await list_devices(format_id, record=record)
    skills["devices"] = parse_devices(devices, lambda format_id: hardware.get(format_id, []))
    skills["protocols"] = parse_protocols(await _run(binary, "-protocols", record))
    return skills


async def probe_build(binary: str, *, record: PidRecorder | None = None) -> dict[str, Any]:
    """The build of ``binary`` (``ffmpeg -version``: version, compiler, configuration,
    libraries); empty strings when it cannot be run."""
    return parse_version(await _run(binary, "-version", record))


class SkillsCache:
    """The parsed skills of one FFmpeg binary, probed once and cached.

    The probe runs on first use (``get``) rather than during startup, so a server start spawns
    no FFmpeg besides the processes' own and the start-up version check, which is reaped before
    the server listens (tests and operators count those children). Its children are started
    through the one spawn path (recorded in ``record``); the event loop keeps serving while
    they run. A cancelled caller (a client that leaves) cancels the probe: its child is killed
    and reaped, the cache keeps what it had. ``reload`` probes again. Concurrent callers share
    one probe (a trio lock).
    """

    def __init__(self, binary: str, *, record: PidRecorder | None = None) -> None:
        self.binary = binary
        self.record = record
        self._skills: dict[str, Any] | None = None
        self._lock = trio.Lock()

    async def _probe(self) -> dict[str, Any]:
        skills = await probe_skills(self.binary, record=self.record)
        log.info("FFmpeg skills: version %s", skills["ffmpeg"]["version"] or "unknown")
        self._skills = skills
        return skills

    async def get(self) -> dict[str, Any]:
        """The skills (probed on the first call)."""
        async with self._lock:
            if self._skills is None:
                return await self._probe()
            return self._skills

    async def reload(self) -> dict[str, Any]:
        """Probe again and return the new skills."""
        async with self._lock:
            return await self._probe()
