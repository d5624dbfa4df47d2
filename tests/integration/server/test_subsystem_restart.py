"""A subsystem whose ``run`` fails is restarted with backoff by the server, which stays up;
the placeholder it provides is withdrawn with the failed run and provided again by the next."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_core.config.settings import load_config
from trio_core.server import Running, Services, build_subsystems, serve


class Flaky:
    """Provides ``{flaky}`` = its run number, fails twice shortly after it started."""

    def __init__(self, services: Services) -> None:
        self.placeholders = services.placeholders
        self.runs = 0
        self.seen: list[str | None] = []  # {flaky} right before each start

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.seen.append(self.placeholders.get("flaky"))
        self.runs += 1
        with self.placeholders.provide("flaky", str(self.runs)):
            task_status.started()
            await trio.sleep(0.2)
            if self.runs <= 2:
                raise RuntimeError(f"flaky run {self.runs} broke")
            await trio.sleep_forever()


async def test_failed_subsystem_restarts_and_server_stays_up(
        tmp_path: Path, ffmpeg: str, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(None, env={}).replace(**{
        "api.address": "127.0.0.1:0", "db.dir": str(tmp_path / "db"),
        "storage.disk.dir": str(tmp_path / "data"), "ffmpeg.binary": ffmpeg,
        "demo.enable": False, "webrtc.enable": False})
    flaky: list[Flaky] = []

    def subsystems(services: Services) -> list[Any]:
        flaky.append(Flaky(services))
        return [*build_subsystems(services), flaky[0]]

    caplog.set_level(logging.ERROR, logger="trio_core.server")
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        srv: Running = await nursery.start(partial(
            serve, config, subsystems=subsystems, restart_backoff=(0.1, 1.0)))
        try:
            with trio.fail_after(10):
                while flaky[0].runs < 3:
                    assert (await client.get(f"{srv.url}/ping")).text == "pong"
                    await trio.sleep(0.05)
            await trio.sleep(0.5)  # the third run stays up
            assert flaky[0].runs == 3
            assert (await client.get(f"{srv.url}/api/v3/process")).status_code == 200
            assert srv.supervisor.placeholders["flaky"] == "3"
            assert srv.supervisor.placeholders["diskfs"]  # the others are untouched
        finally:
            srv.shutdown()
    assert flaky[0].seen == [None, None, None]  # each failed run withdrew its placeholder
    assert "flaky" not in srv.supervisor.placeholders
    failed = [r for r in caplog.records if "Flaky failed; restarting" in r.getMessage()]
    assert len(failed) == 2
