"""``GET /metrics`` of a running server with RTMP and WebRTC on: the shared ``relay_*`` names
carry a series per relay (``server="rtmp"``, ``"webrtc"``) and follow a real RTMP player."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from rtmp.chunk import MessageType
from trio_core.config.settings import load_config
from trio_core.observability.routes import PROMETHEUS_CACHE_SECONDS
from trio_core.rtmp.client import RtmpClient
from trio_core.server import Running, serve


def relay_samples(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("relay_") and not s.name.endswith("_created"):
                out[s.name, s.labels["server"]] = s.value
    return out


async def scrape(url: str) -> dict[tuple[str, str], float]:
    def get() -> str:
        return httpx.get(url + "/metrics", timeout=10).text

    return relay_samples(await trio.to_thread.run_sync(get))


async def test_relay_metrics_on_a_running_server(ffmpeg: str, tmp_path: Path) -> None:
    config = load_config(None, env={}).replace(**{
        "api.address": "127.0.0.1:0", "db.dir": str(tmp_path / "db"),
        "storage.disk.dir": str(tmp_path / "data"), "ffmpeg.binary": ffmpeg,
        "demo.enable": False, "rtmp.enable": True, "rtmp.address": "127.0.0.1:0",
        "metrics.enable_prometheus": True,
    })
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(partial(serve, config))
        try:
            got = await scrape(running.url)
            assert got["relay_readers", "rtmp"] == 0 and got["relay_readers", "webrtc"] == 0
            assert got["relay_reader_drops_total", "rtmp"] == 0
            rtmp_port = int(running.supervisor.placeholders["rtmp"].split(":")[2].split("/")[0])
            publisher = await RtmpClient.open("127.0.0.1", rtmp_port, "live")
            await publisher.publish("x")
            await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00cfg")
            await publisher.send_media(MessageType.VIDEO, 0, b"\x17\x01" + bytes(1000))
            player = await RtmpClient.open("127.0.0.1", rtmp_port, "live")
            await player.play("x")
            await trio.sleep(PROMETHEUS_CACHE_SECONDS)  # /metrics renders at most that often
            got = await scrape(running.url)
            assert got["relay_readers", "rtmp"] == 1
            assert got["relay_gop_cache_bytes", "rtmp"] == 1002
            assert ("relay_reader_skips_total", "rtmp") in got
        finally:
            running.shutdown()
