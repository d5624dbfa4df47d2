"""Lifecycle hooks of supervised processes (the engine <-> WebRTC seam).

A :class:`Hook` is registered with ``Supervisor.add_hook``. For every FFmpeg run of every
process the engine calls, in registration order, ``await hook.on_start(ctx)`` after the command
was assembled and before exec; a hook may append output legs with ``ctx.add_output`` or refuse
the start by raising :class:`HookAbort` (the run counts as ``failed``, the message lands in the
process log and thus in ``state.last_logline``; reconnect rules apply). After FFmpeg exited the
engine calls ``await hook.on_stop(ctx, final)`` — in reverse order, and only for hooks whose
``on_start`` returned normally — with ``final=False`` when a reconnect follows and ``final=True``
when the process stops for good (stop/delete/update/Supervisor shutdown, or no reconnect).

A hook may also have ``await hook.on_load(processes)``: called once by ``Supervisor.run`` with
the processes loaded from the store, before any of them starts (the cleanup rules use it to
clean up after a killed previous run), and ``await hook.on_delete(process)``: called by
``Supervisor.delete`` once the process stopped and was forgotten, before the delete returns
(the cleanup rules purge then, so a new process of the same id never loses its files to it).

Cancellation: ``on_start`` runs inside the process scope (a stop cancels it). ``on_stop`` runs
shielded with a deadline of ``EngineTimings.hook_stop_timeout`` seconds (5 s unless the
Supervisor is given other timings). Any other exception from a hook is logged to the process
log and never crashes the Supervisor or other processes (an exception from ``on_start`` fails
the run like HookAbort).

``ctx.nursery`` is the process's own nursery: it lives from start until stop/delete (across
reconnects) and is cancelled, with everything in it, when the process stops for good. An
exception escaping a task in it ends the process (state ``failed``, logged), not the Supervisor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import trio

from trio_core.engine.command import build_command
from trio_core.engine.process_config import ProcessConfig

__all__ = ["Hook", "HookAbort", "HookedProcess", "RunContext"]


class HookAbort(Exception):
    """Raised by ``on_start`` to refuse a start; ``str(exc)`` is the reason that is logged."""


@runtime_checkable
class Hook(Protocol):
    async def on_start(self, ctx: RunContext) -> None: ...

    async def on_stop(self, ctx: RunContext, final: bool) -> None: ...


class HookedProcess(Protocol):
    """What a hook sees of the process it runs for (:class:`~trio_core.engine.process.Process` is
    one; this module does not import it)."""

    id: str
    config: ProcessConfig
    extra_state: dict[str, Callable[[], Any]]

    def log(self, line: str) -> None:
        """Append ``line`` to the process log."""


class RunContext:
    """What a hook sees of one started process (one instance per start, across reconnects).

    Attributes: ``process`` (the :class:`HookedProcess`), ``nursery`` (the
    process's own nursery), ``state`` (hook-private dict kept across reconnect attempts of this
    start), ``attempt`` (1 for the first FFmpeg run after start, 2.. for reconnects),
    ``config`` (the placeholder-resolved config of the current attempt), ``argv`` (a copy of the
    assembled command, binary first; ``add_output`` updates it).
    """

    def __init__(self, process: HookedProcess, nursery: trio.Nursery, ffmpeg: str) -> None:
        self.process = process
        self.nursery = nursery
        self.state: dict[str, Any] = {}
        self.attempt = 0
        self._ffmpeg = ffmpeg
        self._config: ProcessConfig | None = None
        self._extra: list[tuple[list[str], str]] = []
        self._extra_ids: list[str] = []
        self._argv: list[str] = []

    def _prepare(self, resolved: ProcessConfig) -> None:
        """New attempt: fresh command from the resolved config, no extra legs."""
        self._config = resolved
        self._extra = []
        self._extra_ids = []
        self._argv = build_command(resolved, self._ffmpeg)

    @property
    def config(self) -> ProcessConfig:
        if self._config is None:
            raise RuntimeError("no attempt prepared yet")
        return self._config

    @property
    def argv(self) -> list[str]:
        return list(self._argv)

    @property
    def extra_outputs(self) -> list[tuple[list[str], str]]:
        return [(list(o), a) for o, a in self._extra]

    @property
    def extra_output_labels(self) -> list[tuple[str, str]]:
        """``(id, address)`` of the extra legs, in order (labels in ``state.progress.outputs``)."""
        return [(io_id, address) for io_id, (_, address) in zip(self._extra_ids, self._extra,
                                                                 strict=True)]

    def add_output(self, options: Sequence[str], address: str, *, io_id: str = "extra") -> None:
        """Append an FFmpeg output leg (``options… address``) after the configured outputs.

        ``io_id`` labels the leg's streams in ``state.progress.outputs`` (never empty).
        """
        if isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise TypeError("options must be a sequence of strings")
        if not isinstance(address, str) or not address:
            raise ValueError("address must be a non-empty string")
        if not isinstance(io_id, str) or not io_id:
            raise ValueError("io_id must be a non-empty string")
        self._extra.append((list(options), address))
        self._extra_ids.append(io_id)
        self._argv = build_command(self.config, self._ffmpeg, self._extra)
