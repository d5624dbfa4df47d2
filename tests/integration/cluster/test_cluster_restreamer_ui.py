"""The Restreamer UI's memfs channel (``tests/helpers/restreamer_ui.py``) through HAProxy in
front of three loopback cluster nodes and a real redis-server (issue 20: "the real Restreamer UI
pointed at a load balancer in front works as against one Core"): every request may land on
another node, the channel's processes run wherever placement puts them (the probe on its
ingest's node: ``#id:output=`` affinity), memfs files are read and listed through any node;
then processes reading another's output are placed on its node and move with it."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api, free_port, make_config, running_server, wait_for
from tests.helpers.cluster import cheap_process, haproxy, redis_server
from tests.helpers.restreamer_ui import channel_flow
from trio_core.server import Running

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

SECRET = "shared-jwt-secret-of-the-test-cluster"


async def test_restreamer_ui_channel_through_haproxy(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        async with AsyncExitStack() as stack:
            nodes: list[Running] = []
            for name in ("n1", "n2", "n3"):
                port = free_port()
                config = make_config(tmp_path / name, ffmpeg, **{
                    "api.address": f"127.0.0.1:{port}", "cluster.enable": True,
                    "cluster.redis_url": f"redis://127.0.0.1:{rport}/0",
                    "cluster.node_id": name, "cluster.lease_seconds": 2,
                    "cluster.max_cpu_usage": 0, "cluster.max_memory_usage": 0,
                    # one login is valid on every node behind the balancer
                    "api.auth.enable": True, "api.auth.username": "admin",
                    "api.auth.password": "pw", "api.auth.disable_localhost": False,
                    "api.auth.jwt.secret": SECRET})
                nodes.append(await stack.enter_async_context(running_server(config)))
            lb = stack.enter_context(haproxy(tmp_path / "lb", {
                r.services.cluster.id: r.port for r in nodes}, public_check=True))
            anon = Api(f"http://127.0.0.1:{lb}")

            tokens = (await anon.post("/api/login", {"username": "admin", "password": "pw"})).json()
            api = Api(anon.base, tokens["access_token"])

            async def all_healthy() -> bool:
                resp = await api.get("/api/v3/cluster")
                return resp.status_code == 200 and len(resp.json()["nodes"]) == 3
            await wait_for(all_healthy, timeout=10)
            async with trio.open_nursery() as nursery:
                with trio.fail_after(45):
                    await channel_flow(api, anon, ffmpeg, tmp_path, nursery, timeout=20)
                nursery.cancel_scope.cancel()
            assert (await api.get("/api/v3/process")).json() == []

            # dependency affinity: a process reading another's output runs on its node, and
            # moves with it
            for i in range(4):
                assert (await api.post("/api/v3/process", cheap_process(
                    f"src{i}", autostart=False))).status_code == 200
                assert (await api.post("/api/v3/process", cheap_process(
                    f"dep{i}", autostart=False, input=[{
                        "id": "in", "address": f"#src{i}:output=out", "options": []}])
                    )).status_code == 200
            owners: dict[str, str] = {}

            async def placed() -> bool:
                owners.update((await api.get("/api/v3/cluster/db/map/process")).json())
                return len(owners) == 8 and all(
                    owners[f"dep{i}"] == owners[f"src{i}"] for i in range(4))
            await wait_for(placed, timeout=10)
            target = next(r.services.cluster.id for r in nodes
                          if r.services.cluster.id != owners["src0"])
            body = [{"target_node_id": target, "process_ids": [{"id": "src0", "domain": ""}]}]
            assert (await api.put("/api/v3/cluster/reallocation", body)).json() == "OK"

            async def moved_together() -> bool:
                owners.update((await api.get("/api/v3/cluster/db/map/process")).json())
                return owners["src0"] == owners["dep0"] == target
            await wait_for(moved_together, timeout=10)
