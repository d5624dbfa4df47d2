"""Janus (Debian package ``janus``) as a comparison server, driven over its HTTP API on loopback.

:func:`write_config` writes a private configuration folder (HTTP transport on 127.0.0.1 only,
streaming plugin, ICE restricted to the loopback interface, no event handlers); :func:`janus_argv`
is the command line. :class:`JanusClient` speaks the Janus HTTP API (``/janus``): one session,
one plugin handle per viewer (``janus.plugin.streaming``), one long-poll task dispatching
events by handle, keepalives. The RTP mountpoint is created at run time with ``port = 0`` so
Janus picks (and keeps bound) its own ports, which the bench then feeds.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

JANUS_BIN = "janus"
PLUGINS = "/usr/lib/x86_64-linux-gnu/janus/plugins"
TRANSPORTS = "/usr/lib/x86_64-linux-gnu/janus/transports"


def available() -> str | None:
    """Path of the janus binary, or None when the Debian package is not installed."""
    found = shutil.which(JANUS_BIN)
    if found and os.path.isdir(PLUGINS):
        return found
    return None


def version() -> str:
    """Version string of the installed Janus (from the package), or "?"."""
    try:
        with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as f:
            text = f.read()
        block = text.split("\nPackage: janus\n", 1)[1].split("\n\n", 1)[0]
        for line in block.splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return "?"


def write_config(folder: Path, http_port: int, event_loops: int = 0) -> None:
    """Write a minimal configuration for a loopback-only Janus into ``folder``.

    ``event_loops`` > 0 sets Janus's static event loops (handles share that many threads)
    instead of the default thread per PeerConnection."""
    folder.mkdir(parents=True, exist_ok=True)
    loops = f"    event_loops = {event_loops}\n" if event_loops > 0 else ""
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{PLUGINS}"
    transports_folder = "{TRANSPORTS}"
    events_folder = "/nonexistent"
    loggers_folder = "/nonexistent"
    debug_level = 3
    session_timeout = 120
{loops}}}
media: {{
    rtp_port_range = "30000-39999"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "lo"
    ignore_mdns = true
    full_trickle = false
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so"
}}
transports: {{
    disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so"
}}
events: {{
    broadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {http_port}
    https = false
}}
admin: {{
    admin_http = false
}}
cors: {{
}}
"""
    )
    (folder / "janus.plugin.streaming.jcfg").write_text("general: {\n}\n")


def janus_argv(binary: str, folder: Path) -> list[str]:
    """Command line: config folder, no colours, log to stdout only."""
    return [binary, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-o", "-N"]


class JanusError(RuntimeError):
    """Janus answered with an error or an unexpected shape."""


class JanusClient:
    """Janus HTTP API on one session: plugin handles, a long-poll dispatcher, keepalives.

    Use inside a nursery: ``await nursery.start(client.run)`` creates the session and keeps
    polling events until cancelled. :meth:`watch` returns the offer Janus sends for a
    mountpoint; :meth:`start` sends the answer.
    """

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.session: int | None = None
        self._waiters: dict[tuple[int, str], trio.MemorySendChannel[dict[str, Any]]] = {}
        self._events: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"transaction": secrets.token_hex(6), **body}
        resp = await self.http.post(self.base + path, json=body, timeout=20)
        data: dict[str, Any] = resp.json()
        if data.get("janus") == "error":
            raise JanusError(str(data.get("error")))
        return data

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        data = await self._post("", {"janus": "create"})
        self.session = int(data["data"]["id"])
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keepalive)
            await self._poll()

    async def _keepalive(self) -> None:
        while True:
            await trio.sleep(20)
            try:
                await self._post(f"/{self.session}", {"janus": "keepalive"})
            except (httpx.HTTPError, JanusError):
                pass

    async def _poll(self) -> None:
        while True:
            try:
                resp = await self.http.get(
                    f"{self.base}/{self.session}", params={"maxev": "50"}, timeout=40
                )
                events = resp.json()
            except (httpx.HTTPError, ValueError):
                await trio.sleep(0.2)
                continue
            if isinstance(events, dict):
                events = [events]
            for event in events:
                sender = event.get("sender")
                if sender is None:
                    continue
                channel = self._events.get(int(sender))
                if channel is not None:
                    try:
                        channel.send_nowait(event)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

    async def attach(self) -> tuple[int, trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Attach a streaming-plugin handle; returns (handle id, its event channel)."""
        data = await self._post(
            f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.streaming"}
        )
        handle = int(data["data"]["id"])
        send, recv = trio.open_memory_channel[dict[str, Any]](64)
        self._events[handle] = send
        return handle, recv

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            payload["jsep"] = jsep
        return await self._post(f"/{self.session}/{handle}", payload)

    async def create_mountpoint(
        self, handle: int, mountpoint_id: int, media: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        """Create an RTP mountpoint (synchronous request); returns the plugin's answer."""
        data = await self.message(
            handle,
            {
                "request": "create",
                "type": "rtp",
                "id": mountpoint_id,
                "description": "bench",
                "media": list(media),
                "permanent": False,
            },
        )
        plugindata = data.get("plugindata", {}).get("data", {})
        if plugindata.get("error"):
            raise JanusError(str(plugindata))
        return plugindata

    async def detach(self, handle: int) -> None:
        try:
            await self._post(f"/{self.session}/{handle}", {"janus": "detach"})
        except (httpx.HTTPError, JanusError):
            pass
        self._events.pop(handle, None)

    async def destroy(self) -> None:
        if self.session is not None:
            try:
                await self._post(f"/{self.session}", {"janus": "destroy"})
            except (httpx.HTTPError, JanusError):
                pass
