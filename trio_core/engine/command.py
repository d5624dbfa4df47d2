"""FFmpeg command-line assembly (datarhei ``app.Config.CreateCommand``), pure, no I/O.

``ffmpeg -stats <options> [<in.options> -i <in.address>]… [<out.options> <out.address>]…
[<extra.options> <extra.address>]…``

The one flag we inject is ``-stats`` (right after the binary): it keeps FFmpeg printing its
``frame=…`` progress lines even when the configured ``-loglevel`` is below ``info`` — the stale
timeout and ``state.progress`` depend on them. A later ``-nostats`` in the configured options
still wins. We never add ``-nostdin`` (a graceful stop writes ``q`` to FFmpeg's stdin).
Extra output legs (from hooks, e.g. WebRTC RTP legs) are appended after the configured outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trio_core.engine.placeholders import resolve_config
from trio_core.engine.process_config import ProcessConfig

__all__ = ["INJECTED", "build_command", "core_command"]

INJECTED: tuple[str, ...] = ("-stats",)


def build_command(
    cfg: ProcessConfig,
    ffmpeg: str,
    extra_outputs: Sequence[tuple[Sequence[str], str]] = (),
    *,
    placeholders: Mapping[str, str] | None = None,
) -> list[str]:
    """The argv to exec (binary first).

    ``cfg`` is used as is (already resolved) unless ``placeholders`` is given, in which case a
    resolved copy is used. ``extra_outputs`` are ``(options, address)`` legs appended last.
    """
    if placeholders is not None:
        cfg = resolve_config(cfg, placeholders)
    argv = [ffmpeg, *INJECTED, *cfg.options]
    for io in cfg.input:
        argv += [*io.options, "-i", io.address]
    for io in cfg.output:
        argv += [*io.options, io.address]
    for options, address in extra_outputs:
        argv += [*options, address]
    return argv


def core_command(cfg: ProcessConfig) -> list[str]:
    """Core's ``Config.CreateCommand`` of a resolved config: the arguments without the binary,
    without our injected flags and without hook legs (what Core shows as ``state.command``)."""
    argv = list(cfg.options)
    for io in cfg.input:
        argv += [*io.options, "-i", io.address]
    for io in cfg.output:
        argv += [*io.options, io.address]
    return argv
