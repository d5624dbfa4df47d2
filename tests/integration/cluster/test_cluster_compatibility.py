"""Core v17's node compatibility check over two in-process nodes and a real redis-server: a
node whose FFmpeg build differs is shown ``degraded`` with Core's error and takes no
processes; ``cluster.debug.disable_ffmpeg_check`` (equal on all nodes) accepts it; the
setting is shown as ``config.cluster.debug`` by ``GET /api/v3/config`` (what core_client's
``ConfigCluster`` model requires)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import Api, free_port, make_config, running_server, wait_for
from tests.helpers.cluster import cheap_process, redis_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

LEASE = 2


def other_build(tmp: Path, ffmpeg: str) -> str:
    """The same FFmpeg, reporting another build configuration for ``-version`` (as a node
    with a differently configured FFmpeg would)."""
    script = tmp / "ffmpeg-other-build"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-version" ]; then\n'
        f'  "{ffmpeg}" -version | sed "s/^configuration: /configuration: --enable-other /"\n'
        "  exit 0\n"
        "fi\n"
        f'exec "{ffmpeg}" "$@"\n')
    script.chmod(0o755)
    return str(script)


def node_config(tmp: Path, ffmpeg: str, node_id: str, redis_port: int, **extra: Any) -> Any:
    values = {"api.address": f"127.0.0.1:{free_port()}", "cluster.enable": True,
              "cluster.redis_url": f"redis://127.0.0.1:{redis_port}/0",
              "cluster.node_id": node_id, "cluster.lease_seconds": LEASE,
              "cluster.max_cpu_usage": 0, "cluster.max_memory_usage": 0}
    values.update(extra)
    return make_config(tmp / node_id, ffmpeg, **values)


async def nodes_of(api: Api) -> dict[str, dict[str, Any]]:
    about = (await api.get("/api/v3/cluster")).json()
    return {n["id"]: n for n in about["nodes"]}


async def test_a_node_with_another_ffmpeg_build_is_degraded(tmp_path: Path, ffmpeg: str) -> None:
    other = other_build(tmp_path, ffmpeg)
    with redis_server(tmp_path / "redis") as (_, rport):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                running_server(node_config(tmp_path, ffmpeg, "a", rport)))
            b = await stack.enter_async_context(
                running_server(node_config(tmp_path, other, "b", rport)))
            api_a, api_b = Api(f"http://127.0.0.1:{a.port}"), Api(f"http://127.0.0.1:{b.port}")

            async def b_degraded() -> bool:
                nodes = await nodes_of(api_b)
                return set(nodes) == {"a", "b"} and nodes["b"]["status"] == "degraded"
            await wait_for(b_degraded, timeout=10)
            nodes = await nodes_of(api_a)
            assert nodes["a"]["status"] == "online" and nodes["a"]["error"] == ""
            assert nodes["b"]["error"].startswith("skills: ffmpeg: configuration expected: "), \
                nodes["b"]["error"]
            assert "--enable-other" in nodes["b"]["error"]
            about = (await api_a.get("/api/v3/cluster")).json()
            assert about["status"] == "degraded" and about["degraded"] is False

            # every process goes to the compatible node
            for i in range(6):
                assert (await api_b.post("/api/v3/process", cheap_process(f"p{i}"))).status_code == 200

            async def all_on_a() -> bool:
                states = (await api_b.get("/api/v3/process?filter=state")).json()
                return (sorted(a.services.supervisor.ids()) == [f"p{i}" for i in range(6)]
                        and all(p["state"]["exec"] == "running" for p in states))
            await wait_for(all_on_a, timeout=15)
            owners = (await api_a.get("/api/v3/cluster/db/map/process")).json()
            assert owners == {f"p{i}": "a" for i in range(6)}
            assert b.services.supervisor.ids() == []

            # Core v17's config shape: cluster.debug.disable_ffmpeg_check
            config = (await api_b.get("/api/v3/config")).json()["config"]
            assert config["cluster"]["debug"] == {"disable_ffmpeg_check": False}


async def test_disable_ffmpeg_check_accepts_other_builds(tmp_path: Path, ffmpeg: str) -> None:
    other = other_build(tmp_path, ffmpeg)
    with redis_server(tmp_path / "redis") as (_, rport):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running_server(node_config(
                tmp_path, ffmpeg, "a", rport, **{"cluster.debug.disable_ffmpeg_check": True})))
            # the switch itself must be equal on all nodes
            c = await stack.enter_async_context(running_server(node_config(
                tmp_path, ffmpeg, "c", rport)))
            b = await stack.enter_async_context(running_server(node_config(
                tmp_path, other, "b", rport, **{"cluster.debug.disable_ffmpeg_check": True})))
            api = Api(f"http://127.0.0.1:{b.port}")

            async def settled() -> bool:
                nodes = await nodes_of(api)
                return set(nodes) == {"a", "b", "c"} and nodes["c"]["status"] == "degraded"
            await wait_for(settled, timeout=10)
            nodes = await nodes_of(api)
            assert nodes["a"]["status"] == nodes["b"]["status"] == "online", nodes
            assert nodes["c"]["error"] == ("config: cluster.debug.disable_ffmpeg_check: "
                                           "actual: false, expected: true")
            config = (await Api(f"http://127.0.0.1:{a.port}").get("/api/v3/config")).json()
            assert config["config"]["cluster"]["debug"] == {"disable_ffmpeg_check": True}
            assert c.port and b.port
