"""WebRTC/WHEP helpers: a server with WebRTC enabled, a lavfi process with WebRTC on, waiting
for its source to be live, and posting a WHEP offer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from tests.helpers.api import Api, make_config, running_server
from trio_core.server import Running


def webrtc_process(process_id: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "id": process_id,
        "options": ["-loglevel", "level+info"],
        "input": [
            {"id": "video", "address": "testsrc=size=320x240:rate=25",
             "options": ["-re", "-f", "lavfi"]},
            {"id": "audio", "address": "sine=frequency=440:sample_rate=48000",
             "options": ["-re", "-f", "lavfi"]},
        ],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": {"enabled": True},
        "reconnect": True,
        "reconnect_delay_seconds": 1,
    }
    cfg.update(extra)
    return cfg


@asynccontextmanager
async def webrtc_server(tmp_path, ffmpeg: str, **overrides: Any) -> AsyncIterator[Running]:
    config = make_config(tmp_path, ffmpeg, **{"webrtc.enable": True, **overrides})
    async with running_server(config) as srv:
        yield srv


async def wait_live(api: Api, process_id: str, timeout: float = 20.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            state = (await api.get(f"/api/v3/process/{process_id}/state")).json()
            if state.get("exec") == "running" and (state.get("webrtc") or {}).get("live"):
                return state
            await trio.sleep(0.2)


async def whep_offer(api: Api, process_id: str, sdp: str, **headers: str) -> httpx.Response:
    return await api.request("POST", f"/api/v3/process/{process_id}/whep", content=sdp,
                             headers={"Content-Type": "application/sdp", **headers})
