"""The container image as a user deploys it: built from the Dockerfile with podman, run with auth
on, logged into, played over WHEP from the host, fed over RTMP from the host, stopped and started
again on the same volumes.

Opt-in (``-m container``; ``.ci/run`` runs it as its own step): the first build takes minutes.
Skipped with the reason when podman is not installed, or when the machine's stand-in for the
base image (``python:3.11-slim-bookworm``, built by ``shared/tools/container/make_base.sh`` on
machines without Docker Hub) is expected but missing.

Environment: ``TRIO_CORE_CONTAINER_TOOLS`` (default ``<repo>/../shared/tools/container`` when
it exists): its ``podman_env.sh`` supplies the podman settings of such a machine
(``CONTAINERS_CONF``: runc, ulimits) and marks the base image as a local stand-in.
Everything runs on the host network with loopback addresses and free ports; the container and
its volumes are removed at the end, the image (``localhost/trio-core-test``) is kept so the next
build reuses its layers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.rtmp import publisher_argv, start_ffmpeg
from tests.helpers.whep import webrtc_process

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/trio-core-test"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
MAX_IMAGE_BYTES = 700_000_000
USER, PASSWORD = "admin", "container-test-pw"


def tools_dir() -> Path | None:
    configured = os.environ.get("TRIO_CORE_CONTAINER_TOOLS")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "tools" / "container"
    return candidate if (candidate / "podman_env.sh").is_file() else None


def podman_env() -> dict[str, str]:
    """os.environ plus ``CONTAINERS_CONF`` from the tools' podman_env.sh (when there)."""
    env = dict(os.environ)
    tools = tools_dir()
    if tools is not None and "CONTAINERS_CONF" not in env:
        out = subprocess.run(
            ["bash", "-c", '. "$1/podman_env.sh" && printf %s "$CONTAINERS_CONF"', "_", str(tools)],
            capture_output=True, text=True, check=True, env=env)
        env["CONTAINERS_CONF"] = out.stdout
    return env


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def podman(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``await podman(*args)`` -> CompletedProcess (text); skips when the test cannot run here."""
    if "container" not in (request.config.option.markexpr or ""):
        pytest.skip("builds the container image (minutes): run with -m container (.ci/run does)")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman buildah runc "
                    "fuse-overlayfs uidmap)")
    env = podman_env()
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env, check=False)
    if exists.returncode != 0 and tools_dir() is not None:
        pytest.skip(f"{BASE_IMAGE} is missing: build the local stand-in with "
                    f"{tools_dir()}/make_base.sh (see its README; .ci/run does)")

    async def run(*args: str, check: bool = True, timeout: float = 120.0
                  ) -> subprocess.CompletedProcess[str]:
        with trio.fail_after(timeout):
            done = await trio.run_process(["podman", *args], env=env, capture_stdout=True,
                                          capture_stderr=True, check=False)
        result = subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    return run


class Api:
    """httpx (in a thread) against the container's API, with a bearer token when given."""

    def __init__(self, base: str, token: str = "") -> None:
        self.base = base
        self.token = token

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        hdrs.update(headers or {})
        call = partial(httpx.request, method, self.base + path, json=body, headers=hdrs,
                       timeout=20.0)
        return await trio.to_thread.run_sync(call)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)


async def wait_api(base: str, logs: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = trio.current_time() + timeout
    while True:
        try:
            if (await Api(base).get("/api")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if trio.current_time() > deadline:
            raise AssertionError(f"the container's API did not answer:\n{await logs()}")
        await trio.sleep(0.3)


def server_shutdown_seconds(logs: str) -> float | None:
    """From the container log: seconds from the last "SIGTERM received" to "server stopped"
    (the server's own share of a ``podman stop``, for the report)."""
    stamps: dict[str, float] = {}
    for line in logs.splitlines():
        for key, marker in (("term", "SIGTERM received"), ("stopped", "server stopped")):
            if marker in line:
                when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                stamps[key] = when.timestamp()
    if "term" in stamps and "stopped" in stamps:
        return stamps["stopped"] - stamps["term"]
    return None


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    with trio.move_on_after(timeout):
        while True:
            found = await check()
            if found:
                return found
            await trio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def volumes(podman: Callable[..., Any]) -> AsyncIterator[tuple[str, str]]:
    names = (f"trio-core-test-db-{os.getpid()}", f"trio-core-test-data-{os.getpid()}")
    for name in names:
        await podman("volume", "rm", "-f", name, check=False)
        await podman("volume", "create", name)
    try:
        yield names
    finally:
        with trio.CancelScope(shield=True):
            for name in names:
                await podman("volume", "rm", "-f", name, check=False)


async def test_image_builds_runs_plays_and_restarts(
        podman: Callable[..., Any], ffmpeg: str, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    build = await podman("build", "--format", "docker", "--network", "host", "-t", IMAGE,
                         str(REPO), check=False, timeout=1800)
    (tmp_path / "build.log").write_text(build.stdout + build.stderr)
    assert build.returncode == 0, (build.stdout + build.stderr)[-5000:]
    timings["build"] = time.monotonic() - t0

    # lean, not root, with a health check
    size = int((await podman("image", "inspect", IMAGE, "--format", "{{.Size}}")).stdout)
    history = (await podman("history", IMAGE)).stdout
    print(f"\nimage size: {size} bytes\n{history}")
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB\n{history}"
    inspect = json.loads((await podman("image", "inspect", IMAGE)).stdout)[0]
    config = inspect.get("Config") or {}
    assert config.get("User") == "core:core", config
    healthcheck = inspect.get("Healthcheck") or config.get("Healthcheck") or {}
    assert "/api" in " ".join(healthcheck.get("Test") or []), inspect

    api_port, rtmp_port, udp_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    base = f"http://127.0.0.1:{api_port}"
    name = f"trio-core-test-{os.getpid()}"

    async with volumes(podman) as (db_volume, data_volume):
        run_args = [
            "run", "-d", "--name", name, "--network", "host", "--health-interval", "disable",
            "-e", f"CORE_API_ADDRESS=127.0.0.1:{api_port}",
            "-e", "CORE_API_AUTH_ENABLE=true", "-e", f"CORE_API_AUTH_USERNAME={USER}",
            "-e", f"CORE_API_AUTH_PASSWORD={PASSWORD}",
            "-e", "CORE_WEBRTC_PUBLIC_IP=127.0.0.1", "-e", "CORE_WEBRTC_BIND_ADDRESS=127.0.0.1",
            "-e", f"CORE_WEBRTC_UDP_MUX_PORT={udp_port}",
            "-e", "CORE_RTMP_ENABLE=true", "-e", f"CORE_RTMP_ADDRESS=127.0.0.1:{rtmp_port}",
            "-v", f"{db_volume}:/core/config", "-v", f"{data_volume}:/core/data", IMAGE,
        ]

        async def logs() -> str:
            out = await podman("logs", name, check=False)
            return (out.stdout + out.stderr)[-5000:]

        try:
            t1 = time.monotonic()
            await podman(*run_args)
            await wait_api(base, logs)
            timings["start"] = time.monotonic() - t1
            health = await podman("healthcheck", "run", name, check=False)
            assert health.returncode == 0, (health.stdout, health.stderr, await logs())
            whoami = (await podman("exec", name, "id", "-un")).stdout.strip()
            assert whoami == "core"

            login = await Api(base).request("POST", "/api/login",
                                            {"username": USER, "password": PASSWORD})
            assert login.status_code == 200, login.text
            access, refresh = login.json()["access_token"], login.json()["refresh_token"]
            api = Api(base, access)
            assert (await Api(base).get("/api/v3/process")).status_code == 401
            # the image's FFmpeg is one the Restreamer UI accepts (^5.1 || ^6.1)
            skills = (await api.get("/api/v3/skills")).json()
            major, minor = (int(x) for x in skills["ffmpeg"]["version"].split(".")[:2])
            assert (major, minor) >= (5, 1) and major in (5, 6) and (major, minor) != (6, 0), (
                skills["ffmpeg"]["version"])
            created = await api.request("POST", "/api/v3/process", webrtc_process("cam"))
            assert created.status_code == 200, created.text

            async def live() -> bool:
                state = (await api.get("/api/v3/process/cam/state")).json()
                return state.get("exec") == "running" and bool(
                    (state.get("webrtc") or {}).get("live"))

            await wait_for(live, "the WebRTC process to go live", 60)
            viewer = await run_aiortc_viewer(
                ["--whep", f"{base}/api/v3/process/cam/whep", "--token", access,
                 "--duration", "3"], timeout=90)
            print(f"WHEP viewer on the host: {viewer}")
            assert viewer["error"] is None and viewer["connected"], viewer
            assert viewer["video_frames"] >= 25, viewer  # 25 fps for 3 s, decoded on the host
            assert (viewer["width"], viewer["height"]) == (320, 240), viewer

            async with trio.open_nursery() as nursery:
                publisher = await start_ffmpeg(nursery, publisher_argv(
                    ffmpeg, f"rtmp://127.0.0.1:{rtmp_port}/live/cam"))

                async def listed() -> bool:
                    resp = await api.get("/api/v3/rtmp")
                    assert resp.status_code == 200, resp.text
                    return {"name": "/live/cam"} in resp.json()

                await wait_for(listed, "the RTMP publisher in GET /api/v3/rtmp")

                # stop while a process runs and the publisher is connected
                t2 = time.monotonic()
                await podman("stop", "-t", "10", name, timeout=30)
                timings["stop"] = time.monotonic() - t2
                publisher.kill()
            exit_code = (await podman("inspect", name, "--format", "{{.State.ExitCode}}")).stdout
            stop_log = await logs()
            timings["server shutdown"] = server_shutdown_seconds(stop_log) or -1.0
            assert exit_code.strip() == "0", stop_log
            assert timings["stop"] < 5.0, (timings, stop_log)
            await podman("rm", name)

            # a new container on the same volumes: processes back, the old tokens valid
            t3 = time.monotonic()
            await podman(*run_args)
            await wait_api(base, logs)
            timings["restart"] = time.monotonic() - t3
            listing = await api.get("/api/v3/process")
            assert listing.status_code == 200, listing.text
            assert [p["id"] for p in listing.json()] == ["cam"]
            await wait_for(live, "the WebRTC process to be live again", 60)
            assert (await Api(base, refresh).get("/api/login/refresh")).status_code == 200
            secret = (await podman("exec", name, "stat", "-c", "%U %a",
                                   "/core/config/jwt-secret")).stdout.split()
            assert secret == ["core", "600"]
            t4 = time.monotonic()
            await podman("stop", "-t", "10", name, timeout=30)
            timings["stop again"] = time.monotonic() - t4
            exit_code = (await podman("inspect", name, "--format", "{{.State.ExitCode}}")).stdout
            assert exit_code.strip() == "0", await logs()
        finally:
            with trio.CancelScope(shield=True):
                await podman("rm", "-f", "-t", "0", name, check=False)
    timings["total"] = time.monotonic() - t0
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
