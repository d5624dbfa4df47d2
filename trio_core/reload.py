"""Serve, and serve again after Core's ``GET /api/v3/config/reload``: what the CLI runs.

:func:`serve_reloading` runs :func:`trio_core.server.serve` in a nursery of its own. A reload
request (``Lifecycle.request_reload`` of :mod:`trio_core.server`) stops that ``serve`` gracefully — HTTP first, then
the processes with their orders kept, then the subsystems — and when it has returned, the
config is loaded again (``load(config_file)``: the file ``PUT /api/v3/config`` wrote) and
``serve`` starts again; processes come back as after a restart. One ``serve`` at a time,
nothing of the previous one left running. Cancellation ends the current ``serve`` like any
shutdown.

WebRTC viewers: ``serve_reloading`` owns a :class:`~trio_core.webrtc.subsystem.ForwarderCarry`
(in a nursery around every ``serve``) and passes it to each ``serve``: when the reloaded
config has the same WebRTC settings, the forwarder — UDP mux, Sources, viewers with their
DTLS/SRTP state — lives on and each process takes its Source back when it starts again, so
viewers keep watching; otherwise the old forwarder is closed and its viewers are told at
once (RTCP BYE, DTLS close_notify). When ``serve_reloading`` returns (or is cancelled) the
carried forwarder ends with it; nothing outlives it.

When the reloaded config cannot be loaded or does not start, the previous one serves again and
the config file (the one ``PUT /api/v3/config`` writes) is put back to what it was when that
config started — the refused file is kept beside it as ``<file>.rejected`` — so the file always
holds a config that runs, and the next start does not fail on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from trio_core.config.settings import RANDOM_WHEN_EMPTY, Config, SettingError
from trio_core.config.v3_mapping import CONFIG_FILE_NAME
from trio_core.server import Running, serve
from trio_core.webrtc.subsystem import ForwarderCarry

log = logging.getLogger(__name__)


def config_file_of(config: Config) -> str:
    """The file ``PUT /api/v3/config`` writes while ``config`` runs (and a reload reads)."""
    return config.config_file or os.path.join(os.path.abspath(config["db.dir"]),
                                              CONFIG_FILE_NAME)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def restore_config_file(path: str, content: bytes | None) -> None:
    """Put ``path`` back to ``content`` (None: no file); the current one goes to
    ``<path>.rejected``. Logged, never raises."""
    try:
        current = _read(path)
        if current == content:
            return
        if current is not None:
            os.replace(path, path + ".rejected")
        if content is not None:
            tmp = path + ".restoring"
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        log.warning("reload: %s put back to the configuration that runs (the refused one is "
                    "%s.rejected)", path, path)
    except OSError as exc:
        log.error("reload: cannot put %s back: %s", path, exc)


async def serve_reloading(
    config: Config,
    *,
    load: Callable[[str | None], Config],
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    on_running: Callable[[Running], None] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``serve`` again and again while reloads are requested.

    ``load(config_file)`` builds the next config (the CLI passes
    :func:`trio_core.config.v3_mapping.load`); when it fails, the previous config is served again.
    An ephemeral API port (0) is kept across reloads. ``task_status`` reports the first
    :class:`Running`; ``on_running`` is called with every one. Returns when a ``serve`` ends
    without a reload request. Startup errors of the first ``serve`` propagate; those of a
    reloaded config make it serve the previous config again (once).
    """
    async with trio.open_nursery() as kept:  # what outlives one serve: the WebRTC forwarder
        carry = ForwarderCarry(kept)
        try:
            await _serve_reloading(config, carry, load=load, shutdown_trigger=shutdown_trigger,
                                   on_running=on_running, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await carry.aclose()  # every remaining viewer told, the socket closed
            kept.cancel_scope.cancel()


async def _serve_reloading(
    config: Config,
    carry: ForwarderCarry,
    *,
    load: Callable[[str | None], Config],
    shutdown_trigger: Callable[[], Awaitable[Any]] | None,
    on_running: Callable[[Running], None] | None,
    task_status: trio.TaskStatus[Running],
) -> None:
    first = True
    fallback: Config | None = None  # the config that served before a reload
    running_file: tuple[str, bytes | None] | None = None  # its config file, as it started
    fallback_file = running_file
    while True:
        started = False
        starting_file = (path := config_file_of(config), _read(path))
        try:
            async with trio.open_nursery() as nursery:
                running: Running = await nursery.start(
                    partial(serve, config, shutdown_trigger=shutdown_trigger, carry=carry)
                )
                started = True
                running_file = starting_file
                if on_running is not None:
                    on_running(running)
                if first:
                    task_status.started(running)
                    first = False
        except Exception as exc:  # re-raised unless a reloaded config failed to start
            if started or fallback is None:
                raise
            log.error("reload: the new configuration does not start (%s); serving the "
                      "previous one", exc)
            if fallback_file is not None:
                restore_config_file(*fallback_file)
            config, fallback = fallback, None
            continue
        context = running.services.lifecycle
        if not context.reload_requested:
            return
        log.info("reloading the configuration (%s)",
                 context.reload_config_file or "no config file")
        try:
            new_config = load(context.reload_config_file)
            if new_config["api.address"] == config["api.address"] and config.api_port == 0:
                host = running.host
                shown = f"[{host}]" if ":" in host else host
                new_config = new_config.replace(**{"api.address": f"{shown}:{running.port}"})
            for secret in RANDOM_WHEN_EMPTY:
                if new_config.sources.get(secret) == "default" and (
                        config.sources.get(secret) in ("default", "override")):
                    # a random per-start secret is kept: tokens (and {memfs} credentials)
                    # stay valid across the reload
                    new_config = new_config.replace(**{secret: config[secret]})
        except SettingError as exc:
            log.error("reload: %s; serving the previous configuration", exc)
            new_config = config
            if running_file is not None:
                restore_config_file(*running_file)
        fallback = config
        fallback_file = running_file
        config = new_config
