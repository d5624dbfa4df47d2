"""The edge relay (``cluster.relay``, issue 20): three trio-core nodes (child processes on
loopback ports) with Debian's redis-server, one WebRTC process (real FFmpeg lavfi) and aiortc
WHEP viewers spread over all three nodes. The two nodes that do not run the process answer
their viewers themselves (201, no 307) from one upstream session each: the origin serves
exactly one session per edge besides its own viewers; every viewer decodes ≥ 90 % of the
frames; an edge's upstream session ends after its last viewer left (linger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api, free_port
from tests.helpers.cluster import NodeProcess, node_env, redis_server, started_nodes
from tests.helpers.server_process import server_env
from tests.helpers.whep import webrtc_process

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

NAMES = ("n1", "n2", "n3")
PER_NODE = 2
DURATION = 4.0
FPS = 25  # webrtc_process's testsrc rate


def api_base(node: NodeProcess) -> str:
    return "http://" + node.env["CORE_API_ADDRESS"]


async def viewers_at(base: str, process_id: str) -> list[dict[str, Any]]:
    state = (await Api(base).get(f"/api/v3/cluster/local/process/{process_id}/state")).json()
    return list((state.get("webrtc") or {}).get("viewers") or [])


async def test_edge_relay_one_upstream_per_edge(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        nodes = []
        for name in NAMES:
            base = server_env(tmp_path / name, ffmpeg)
            env = node_env(base, node_id=name, api_port=free_port(), redis_port=rport,
                           lease=3, CORE_CLUSTER_RELAY="true",
                           CORE_METRICS_ENABLE_PROMETHEUS="true")
            nodes.append(NodeProcess(name, env, tmp_path / f"{name}.log"))
        async with started_nodes(nodes):
            api = Api(api_base(nodes[0]))
            resp = await api.post("/api/v3/process", webrtc_process("cam"))
            assert resp.status_code == 200, resp.text
            with trio.fail_after(20):
                while True:
                    owner = (await api.get("/api/v3/cluster/db/map/process")).json().get("cam")
                    state = (await api.get("/api/v3/process/cam/state")).json()
                    if owner and (state.get("webrtc") or {}).get("live"):
                        break
                    await trio.sleep(0.2)
            origin = next(n for n in nodes if n.name == owner)
            edges = [n for n in nodes if n is not origin]

            # a non-owner answers the WHEP POST itself (201 + answer), no redirect
            results: dict[str, list[dict[str, Any]]] = {n.name: [] for n in nodes}
            during: list[list[dict[str, Any]]] = []

            async def watch(node: NodeProcess) -> None:
                url = f"{api_base(node)}/api/v3/process/cam/whep"
                results[node.name].append(await run_aiortc_viewer(
                    ["--whep", url, "--duration", str(DURATION), "--video-only"], timeout=40))

            gauges: list[str] = []

            async def sample() -> None:
                await trio.sleep(DURATION / 2 + 1.5)
                during.append(await viewers_at(api_base(origin), "cam"))
                async with httpx.AsyncClient() as client:
                    for edge in edges:
                        resp = await client.get(f"{api_base(edge)}/metrics")
                        assert resp.status_code == 200, resp.text[:300]
                        gauges.extend(ln for ln in resp.text.splitlines()
                                      if ln.startswith("cluster_relay_sessions{"))

            async with trio.open_nursery() as nursery:
                for node in nodes:
                    for _ in range(PER_NODE):
                        nursery.start_soon(watch, node)
                nursery.start_soon(sample)

            for name, seen in results.items():
                for r in seen:
                    assert r["error"] is None, (name, r)
                    assert r["delete_status"] == 204, (name, r)
                    window = DURATION - r["first_frame_ms"] / 1000
                    assert r["video_frames"] >= 0.9 * FPS * window, (name, r)
            # the origin served its own viewers plus exactly one session per edge
            assert during, "no sample of the origin's viewers"
            assert len(during[0]) == PER_NODE + len(edges), during[0]
            remotes = {v["remote_address"] for v in during[0]}
            assert len(remotes) == PER_NODE + len(edges), remotes
            # each edge held one upstream session meanwhile
            assert len(gauges) == len(edges) and all(g.endswith(" 1.0") for g in gauges), gauges

            # the edges' upstream sessions end after their last viewer left (linger 5 s)
            with trio.fail_after(12):
                while len(await viewers_at(api_base(origin), "cam")) > 0:
                    await trio.sleep(0.25)
            async with httpx.AsyncClient() as client:
                for edge in edges:
                    text = (await client.get(f"{api_base(edge)}/metrics")).text
                    line = next(ln for ln in text.splitlines()
                                if ln.startswith("cluster_relay_sessions{"))
                    assert line.endswith(" 0.0"), line


async def test_edge_follows_the_process_to_its_new_owner(tmp_path: Path, ffmpeg: str) -> None:
    """``kill -9`` of the owner: the edge's upstream session moves to the node that takes the
    process over, and the edge's viewer (same WHEP session) gets video again."""
    with redis_server(tmp_path / "redis") as (_, rport):
        nodes = []
        for name in NAMES:
            base = server_env(tmp_path / name, ffmpeg)
            env = node_env(base, node_id=name, api_port=free_port(), redis_port=rport,
                           lease=3, CORE_CLUSTER_RELAY="true")
            nodes.append(NodeProcess(name, env, tmp_path / f"{name}.log"))
        async with started_nodes(nodes):
            api = Api(api_base(nodes[0]))
            resp = await api.post("/api/v3/process", webrtc_process("cam"))
            assert resp.status_code == 200, resp.text

            async def owner_of() -> str | None:
                return (await api.get("/api/v3/cluster/db/map/process")).json().get("cam")
            with trio.fail_after(20):
                while True:
                    owner = await owner_of()
                    state = (await api.get("/api/v3/process/cam/state")).json()
                    if owner and (state.get("webrtc") or {}).get("live"):
                        break
                    await trio.sleep(0.2)
            victim = next(n for n in nodes if n.name == owner)
            edge, other = [n for n in nodes if n is not victim]
            # the edge takes no processes: the failover goes to the third node
            resp = await Api(api_base(edge)).put(f"/api/v3/cluster/node/{edge.name}/state",
                                                 {"state": "maintenance"})
            assert resp.status_code == 200, resp.text
            progress: list[tuple[float, int]] = []
            killed: list[float] = []

            async def kill_later() -> None:
                with trio.fail_after(20):
                    while not progress or progress[-1][1] < 25:
                        await trio.sleep(0.1)
                killed.append(progress[-1][0])
                victim.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_later)
                result = await run_aiortc_viewer(
                    ["--whep", f"{api_base(edge)}/api/v3/process/cam/whep", "--duration", "14",
                     "--video-only"], timeout=60,
                    on_progress=lambda p: progress.append((p["t"], p["video_frames"])))
            assert result["error"] is None, result
            assert killed, "the viewer never got video from the first owner"
            assert await owner_of() == other.name
            at_kill = max(f for t, f in progress if t <= killed[0])
            after = progress[-1][1] - at_kill
            # lease 3 s + takeover + a new upstream: video again well within the window
            assert after >= 50, (after, progress[-10:])
            assert len(await viewers_at(api_base(other), "cam")) == 1  # the edge, still on
            log = edge.log.read_text()
            assert "upstream session 2 to " + other.name in log, log[-3000:]
