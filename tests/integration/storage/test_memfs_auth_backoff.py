"""memfs Basic auth backs off per client address (issue 22 item 11), as ``/api/login`` does.

Real server, real keep-alive HTTP clients (httpx), a second client address (127.0.0.2), and a
real FFmpeg writing HLS to ``{memfs}`` while an attacker guesses on the public mount.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers.api import Api, make_config, running_server, tiny_process
from trio_core.storage.subsystem import StorageSubsystem

AUTH = ("writer", "s3cret")
#: first wait 50 ms, doubling, at most 800 ms
BACKOFF = {"api.auth.login_backoff_ms": 50, "api.auth.login_backoff_max_ms": 800}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _config(tmp_path: Path, ffmpeg: str, **extra: object):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, ffmpeg, **{
        "storage.memory.auth.enable": True, "storage.memory.auth.username": AUTH[0],
        "storage.memory.auth.password": AUTH[1], **BACKOFF, **extra})


async def _timed_put(client: httpx.AsyncClient, path: str, password: str) -> tuple[int, float]:
    start = time.monotonic()
    resp = await client.put(path, content=b"x", headers=_basic(AUTH[0], password))
    return resp.status_code, time.monotonic() - start


async def _guesses_back_off(base: str) -> None:
    """Wrong passwords from one address: sequential ones wait longer each time, parallel ones
    are answered one by one; the right password from another address is not held up."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as attacker, \
            httpx.AsyncClient(base_url=base, timeout=30, transport=httpx.AsyncHTTPTransport(
                local_address="127.0.0.2")) as other:
        waits = []
        for i in range(5):  # one keep-alive connection
            status, took = await _timed_put(attacker, f"/memfs/guess{i}", f"wrong{i}")
            assert status == 401
            waits.append(took)
        print("sequential wrong guesses took", [round(w, 3) for w in waits])
        for i, took in enumerate(waits):  # 50 ms, 100 ms, ... 800 ms: growing (load only adds)
            assert took >= 0.05 * 2 ** i * 0.9, waits

        answers: list[tuple[int, float]] = []
        other_took: list[float] = []
        start = time.monotonic()

        async def guess(i: int) -> None:
            answers.append(await _timed_put(attacker, f"/memfs/p{i}", f"bad{i}"))

        async def right_from_elsewhere() -> None:
            await trio.sleep(0.2)  # the guesses are queued by now
            status, took = await _timed_put(other, "/memfs/ok-other", AUTH[1])
            assert status == 201
            other_took.append(took)

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(guess, i)
            nursery.start_soon(right_from_elsewhere)
        total = time.monotonic() - start
        assert sorted(s for s, _ in answers) == [401] * 4
        print(f"4 parallel wrong guesses took {total:.2f}s; the right password from "
              f"127.0.0.2 took {other_took[0]:.3f}s")
        assert total >= 4 * 0.8 * 0.9  # answered one after the other, 800 ms each
        assert other_took[0] < 1.0  # not queued behind the 3.2 s of guesses
        # the right password from the guessing address is still accepted afterwards
        status, _ = await _timed_put(attacker, "/memfs/ok-same", AUTH[1])
        assert status == 201
        # no Authorization at all is a challenge request (FFmpeg's first try), not a guess
        start = time.monotonic()
        assert (await attacker.put("/memfs/challenge", content=b"x")).status_code == 401
        assert time.monotonic() - start < 0.3


@pytest.mark.slow
async def test_wrong_memfs_passwords_back_off_on_the_public_mount(tmp_path: Path,
                                                                  ffmpeg: str) -> None:
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        await _guesses_back_off(srv.url)
        resp = await Api(srv.url).get("/memfs/ok-other")
        assert resp.status_code == 200 and resp.content == b"x"


@pytest.mark.slow
async def test_wrong_memfs_passwords_back_off_on_the_loopback_endpoint(tmp_path: Path,
                                                                       ffmpeg: str) -> None:
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        port = srv.subsystem(StorageSubsystem).loopback.port
        await _guesses_back_off(f"http://127.0.0.1:{port}")


@pytest.mark.slow
async def test_ffmpeg_memfs_uploads_are_not_slowed_by_guesses(tmp_path: Path, ffmpeg: str) -> None:
    """FFmpeg's HLS upload to ``{memfs}`` (401 challenge, then Basic auth on the loopback
    endpoint) keeps its pace while wrong passwords from 127.0.0.1 queue on the public mount."""
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        cfg = tiny_process("hls")
        cfg["output"] = [{"id": "hls", "address": "{memfs}/hls/live.m3u8", "options": [
            "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "3", "-method", "PUT"]}]
        assert (await api.post("/api/v3/process", cfg)).status_code == 200
        memfs = srv.subsystem(StorageSubsystem).memfs

        def segments() -> set[str]:
            return {f.name for f in memfs.list("/hls/*.ts")}

        with trio.fail_after(20):
            while not segments():
                await trio.sleep(0.2)
        seen = set(segments())
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as attacker:
            async def guess(i: int) -> None:
                await attacker.put(f"/memfs/g{i}", content=b"x", headers=_basic(AUTH[0], "no"))

            async with trio.open_nursery() as nursery:
                for i in range(8):  # 50 ms .. 800 ms each, one after the other: > 3 s
                    nursery.start_soon(guess, i)
                start = time.monotonic()
                while time.monotonic() - start < 4:
                    seen |= segments()
                    await trio.sleep(0.1)
                new_during = len(seen) - 1
        print(f"{new_during} new HLS segments while the guesses queued")
        assert new_during >= 3  # 1 s segments for 4 s
        state = (await api.get("/api/v3/process/hls/state")).json()
        assert state["exec"] == "running", state
