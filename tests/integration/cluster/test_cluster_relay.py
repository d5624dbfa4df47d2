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

            async def sample() -> None:
                await trio.sleep(DURATION / 2 + 1.5)
                during.append(await viewers_at(api_base(origin), "cam"))

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
