"""Capture/output hardware listed inside the skills' ``devices`` (Core's ffmpeg/skills devices).

Core fills ``devices[].devices`` for four FFmpeg device formats: ``alsa`` (capture PCMs from
``/proc/asound/cards`` + ``/proc/asound/devices``), ``video4linux2`` (``v4l2-ctl
--list-devices``), ``fbdev`` (``/dev/fbN`` with ``fbset -s`` for geometry and pixel format) and
``avfoundation`` (macOS only; not done here). Each entry is ``{"id", "name", "extra",
"media"}``: the Restreamer UI offers them as sources (``hw:1,0``, ``/dev/video0`` ...).

The ``parse_*`` functions are pure (text in, list out); :func:`list_devices` does the small
/proc and /dev reads and runs the helpers as :func:`~trio_core.ffmpeg.child.run_process`
children (short timeouts; a missing file or tool just means no devices). Cancelling it kills
and reaps the running helper first.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable

import trio

from trio_core.ffmpeg.child import DEVNULL, PidRecorder, run_process

HELPER_TIMEOUT = 5.0

_RE_ALSA_CARD = re.compile(r"^\s*([0-9]+) \[([^\]]+)\]: (.*)$")
_RE_ALSA_DEVICE = re.compile(r"^\s*[0-9]+: \[\s?([0-9]+)-\s?([0-9]+)\]: (.*)$")
_RE_V4L_NAME = re.compile(r"^(.*)\((.*?)\):$")
_RE_V4L_DEVICE = re.compile(r"/dev/video[0-9]+")
_RE_FB_GEOMETRY = re.compile(r"geometry ([0-9]+) ([0-9]+) ([0-9]+) ([0-9]+) ([0-9]+)")
_RE_FB_RGBA = re.compile(
    r"rgba ([0-9]+/[0-9]+),([0-9]+/[0-9]+),([0-9]+/[0-9]+),([0-9]+/[0-9]+)")

# (bits per pixel, red, green, blue offset) -> FFmpeg pixel format, as Core's table
_FB_FORMATS = (
    (32, 0, 8, 16, "rgba"), (32, 16, 8, 0, "bgra"), (32, 8, 16, 24, "argb"),
    (32, 3, 2, 8, "abgr"), (24, 0, 8, 16, "rgb24"), (24, 16, 8, 0, "bgr24"),
    (16, 11, 5, 0, "rgb565le"), (16, 0, 5, 11, "rgb565be"),
)


def _device(dev_id: str, name: str, extra: str, media: str) -> dict[str, str]:
    return {"id": dev_id, "name": name, "extra": extra, "media": media}


def parse_alsa(cards: str, devices: str) -> list[dict[str, str]]:
    """Capture devices from ``/proc/asound/cards`` and ``/proc/asound/devices`` text."""
    names: dict[str, str] = {}
    for line in cards.splitlines():
        match = _RE_ALSA_CARD.match(line)
        if match:
            names[match.group(1)] = match.group(3)
    out = []
    for line in devices.splitlines():
        match = _RE_ALSA_DEVICE.match(line)
        if not match or match.group(3) != "digital audio capture":
            continue
        card, device = match.group(1), match.group(2)
        if card in names:
            out.append(_device(f"hw:{card},{device}", names[card], "", "audio"))
    return out


def parse_v4l2(text: str) -> list[dict[str, str]]:
    """Video devices from ``v4l2-ctl --list-devices`` output."""
    out = []
    name = extra = ""
    for line in text.splitlines():
        device = _RE_V4L_DEVICE.search(line)
        if device is None:
            match = _RE_V4L_NAME.match(line)
            if match:
                name, extra = match.group(1).strip(), match.group(2)
            continue
        if name:
            out.append(_device(device.group(0), name, extra, "video"))
    return out


def _fb_offset(spec: str) -> int:
    bits, _, offset = spec.partition("/")
    if not bits.isdigit() or not offset.isdigit() or int(bits) == 0:
        return 0
    return int(offset)


def parse_fbset(text: str) -> str:
    """The ``extra`` of a framebuffer from ``fbset -s``: ``WxH [(VWxVH)] pixfmt`` or ``""``."""
    geometry, bpp, offsets = "", 0, (0, 0, 0)
    for line in text.splitlines():
        match = _RE_FB_GEOMETRY.search(line)
        if match:
            w, h, vw, vh, depth = match.groups()
            geometry = f"{w}x{h}" + ("" if (w, h) == (vw, vh) else f" ({vw}x{vh})")
            bpp = int(depth)
        match = _RE_FB_RGBA.search(line)
        if match:
            offsets = (_fb_offset(match.group(1)), _fb_offset(match.group(2)),
                       _fb_offset(match.group(3)))
    if not geometry or not bpp:
        return ""
    for fb_bpp, red, green, blue, name in _FB_FORMATS:
        if (fb_bpp, red, green, blue) == (bpp, *offsets):
            return f"{geometry} {name}"
    return ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


async def _run(args: list[str], record: PidRecorder | None) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        with trio.fail_after(HELPER_TIMEOUT):
            result = await run_process(args, stdin=DEVNULL, capture_stdout=True,
                                       capture_stderr=True, env={}, record=record,
                                       record_id=f"skills {args[0]}")
    except (OSError, trio.TooSlowError):
        return ""
    assert result.stdout is not None
    return result.stdout.decode("utf-8", "replace")


async def _alsa(record: PidRecorder | None) -> list[dict[str, str]]:
    return parse_alsa(_read("/proc/asound/cards"), _read("/proc/asound/devices"))


async def _video4linux2(record: PidRecorder | None) -> list[dict[str, str]]:
    return parse_v4l2(await _run(["v4l2-ctl", "--list-devices"], record))


async def _framebuffers(record: PidRecorder | None) -> list[dict[str, str]]:
    out = []
    for index in range(32):
        path = f"/dev/fb{index}"
        if not os.path.exists(path):
            break
        out.append(_device(path, path, parse_fbset(await _run(["fbset", "-s", "-fb", path],
                                                              record)), "video"))
    return out


LISTERS: dict[str, Callable[[PidRecorder | None], Awaitable[list[dict[str, str]]]]] = {
    "alsa": _alsa,
    "video4linux2": _video4linux2,
    "fbdev": _framebuffers,
}


async def list_devices(format_id: str, *, record: PidRecorder | None = None
                       ) -> list[dict[str, str]]:
    """The hardware of FFmpeg device format ``format_id`` (empty when unknown); helper
    programs are recorded in ``record`` while they run."""
    lister = LISTERS.get(format_id)
    return await lister(record) if lister else []
