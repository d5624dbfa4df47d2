"""Cleanup rules apply at start (issue 22 item 15a): files a killed run left behind.

A clean shutdown purges the ``purge_on_delete`` files; a killed server cannot. On the next
start the rules of every stored process are applied before its FFmpeg runs: leftovers that
the missed shutdown would have purged go, ``max_files`` trims the rest, unrelated files stay.
Real server, real disk directory, a real FFmpeg run afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.helpers.api import Api, make_config, running_server, tiny_process, wait_for


def _hls_like(process_id: str, **extra: object) -> dict:
    cfg = tiny_process(process_id, **extra)
    cfg["output"][0]["cleanup"] = [
        {"pattern": "diskfs:/{processid}/*.ts", "max_files": 0, "purge_on_delete": True},
        {"pattern": "diskfs:/{processid}/*.jpg", "max_files": 2, "purge_on_delete": False},
    ]
    return cfg


async def test_leftovers_of_a_killed_run_are_cleaned_when_the_server_starts(
        tmp_path: Path, ffmpeg: str) -> None:
    data = tmp_path / "data"
    config = make_config(tmp_path, ffmpeg)
    async with running_server(config) as srv:
        api = Api(srv.url)
        for pid, autostart in (("live", True), ("idle", False)):
            resp = await api.post("/api/v3/process", _hls_like(pid, autostart=autostart))
            assert resp.status_code == 200, resp.text
    # what a kill -9 of the server leaves: segments and snapshots nobody purged
    now = time.time()
    for pid in ("live", "idle"):
        (data / pid).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            for ext in ("ts", "jpg"):
                path = data / pid / f"old_{i}.{ext}"
                path.write_bytes(b"x")
                os.utime(path, (now - 100 + i, now - 100 + i))
        (data / pid / "notes.txt").write_bytes(b"not matched by any rule")

    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        # before the first sweep interval could have done it: by the time the server answers
        # (the stored processes are loaded and the autostarted one is running), it is done
        for pid in ("live", "idle"):
            names = sorted(p.name for p in (data / pid).iterdir())
            assert names == ["notes.txt", "old_3.jpg", "old_4.jpg"], (pid, names)

        async def running() -> bool:
            state = (await api.get("/api/v3/process/live/state")).json()
            return state["exec"] == "running"

        await wait_for(running)
