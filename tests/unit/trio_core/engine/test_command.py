"""trio_core.engine.command: the argv FFmpeg runs (binary, injected -stats, options, inputs, outputs,
hook legs) and Core's ``state.command`` view of it (no binary, nothing injected)."""

from __future__ import annotations

from trio_core.engine.command import INJECTED, build_command, core_command
from trio_core.engine.process_config import ProcessConfig

CFG = ProcessConfig.from_json({
    "id": "p", "options": ["-loglevel", "info"],
    "input": [{"id": "in", "address": "testsrc", "options": ["-f", "lavfi"]}],
    "output": [{"id": "out", "address": "{diskfs}/x.m3u8", "options": ["-f", "hls"]}],
})


def test_build_command_orders_everything_and_resolves_placeholders_on_request() -> None:
    argv = build_command(CFG, "/usr/bin/ffmpeg", [(["-f", "rtp"], "rtp://127.0.0.1:5000")],
                         placeholders={"diskfs": "/data"})
    assert argv == ["/usr/bin/ffmpeg", *INJECTED, "-loglevel", "info", "-f", "lavfi", "-i",
                    "testsrc", "-f", "hls", "/data/x.m3u8", "-f", "rtp", "rtp://127.0.0.1:5000"]
    assert build_command(CFG, "ffmpeg")[-1] == "{diskfs}/x.m3u8"  # used as is without them


def test_core_command_has_no_binary_no_injected_flags_no_hook_legs() -> None:
    assert core_command(CFG) == ["-loglevel", "info", "-f", "lavfi", "-i", "testsrc",
                                 "-f", "hls", "{diskfs}/x.m3u8"]
