"""Three trio-core nodes (child processes, loopback with distinct ports — no network
namespaces), Debian's redis-server and HAProxy in front of the API (issue 20): processes
created through HAProxy spread over the nodes; ``kill -9`` of a node moves its processes
within lease + 5 s; the node restarts and rejoins; a node cut off from Redis (its Redis
connection black-holed by a proxy the test controls) stops its FFmpegs before its leases
expire and healing makes no duplicate. A census of every node's FFmpeg children (/proc,
every 200 ms) checks that no process ever runs twice."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api, free_port
from tests.helpers.cluster import (
    Census,
    NodeProcess,
    cheap_process,
    ffmpegs_of,
    haproxy,
    node_env,
    proxies,
    redis_server,
    started_nodes,
)
from tests.helpers.server_process import server_env
from tests.helpers.whep import webrtc_process

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

LEASE = 3
NAMES = ("n1", "n2", "n3")


def make_nodes(tmp: Path, ffmpeg: str, redis_ports: dict[str, int],
               webrtc: bool = False) -> list[NodeProcess]:
    nodes = []
    for name in NAMES:
        base = server_env(tmp / name, ffmpeg, CORE_WEBRTC_ENABLE=str(webrtc).lower())
        env = node_env(base, node_id=name, api_port=free_port(), redis_port=redis_ports[name],
                       lease=LEASE)
        nodes.append(NodeProcess(name, env, tmp / f"{name}.log"))
    return nodes


def api_port(node: NodeProcess) -> int:
    return int(node.env["CORE_API_ADDRESS"].rsplit(":", 1)[1])


def totals(per_node: dict[str, Counter[str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for counts in per_node.values():
        out.update(counts)
    return out


async def wait_running(census: Census, ids: set[str], timeout: float,
                       without: str | None = None) -> float:
    """Seconds until every id in ``ids`` has exactly one FFmpeg (none on ``without``)."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while True:
            per_node = census.last
            total = totals(per_node)
            if (per_node and set(total) >= ids and all(total[i] == 1 for i in ids)
                    and (without is None or not per_node.get(without))):
                return trio.current_time() - start
            await trio.sleep(0.1)


async def watch_through(base: str, process_id: str) -> dict[str, object]:
    """An aiortc viewer whose WHEP offer is POSTed to ``base`` (HAProxy), following a 307 to
    the node that runs the process."""
    async def answer(offer: str) -> str:
        def post() -> httpx.Response:
            return httpx.post(f"{base}/api/v3/process/{process_id}/whep", content=offer,
                              headers={"Content-Type": "application/sdp"},
                              follow_redirects=True, timeout=15)
        resp = await trio.to_thread.run_sync(post)
        assert resp.status_code == 201, resp.text
        return resp.text
    return await run_aiortc_viewer(["--stdio", "--duration", "1.5", "--video-only"], answer,
                                   timeout=40)


async def test_spread_kill_and_rejoin_through_haproxy(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        nodes = make_nodes(tmp_path, ffmpeg, dict.fromkeys(NAMES, rport), webrtc=True)
        async with started_nodes(nodes):
            with haproxy(tmp_path, {n.name: api_port(n) for n in nodes}) as hport:
                api = Api(f"http://127.0.0.1:{hport}")
                census = Census({n.name: n.pid for n in nodes})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(census.run)
                    ids = {f"ch{i:02d}" for i in range(30)}
                    for pid in sorted(ids):
                        resp = await api.post("/api/v3/process", cheap_process(pid))
                        assert resp.status_code == 200, resp.text
                    resp = await api.post("/api/v3/process", webrtc_process("cam"))
                    assert resp.status_code == 200, resp.text
                    await wait_running(census, ids, timeout=20)
                    load = {name: len(c) for name, c in census.last.items()}
                    base = f"http://127.0.0.1:{hport}"

                    async def cam_owner() -> str | None:
                        state = (await api.get("/api/v3/process/cam/state")).json()
                        if not (state.get("webrtc") or {}).get("live"):
                            return None
                        return (await api.get("/api/v3/cluster/db/map/process")).json().get("cam")
                    with trio.fail_after(20):
                        while (owner := await cam_owner()) is None:
                            await trio.sleep(0.2)
                    seen = await watch_through(base, "cam")
                    assert seen["video_frames"], seen
                    assert min(load.values()) >= 1 and max(load.values()) / min(load.values()) <= 2, load

                    # the API through HAProxy: every process, its state from the owner
                    listed = (await api.get("/api/v3/process?filter=state")).json()
                    assert {p["id"] for p in listed} == ids | {"cam"}
                    assert {p["state"]["exec"] for p in listed} == {"running"}

                    # kill -9 the node that runs the WebRTC process (and its viewer)
                    victim = next(n for n in nodes if n.name == owner)
                    lost = set(census.last[victim.name])
                    victim.kill()
                    elapsed = await wait_running(census, ids, timeout=LEASE + 5 + 2,
                                                 without=victim.name)
                    assert elapsed <= LEASE + 5, elapsed
                    survivors = {n: c for n, c in census.last.items() if n != victim.name}
                    assert lost <= set(totals(survivors))
                    # the viewer comes back through HAProxy and gets video from the new owner
                    with trio.fail_after(20):
                        while await cam_owner() in (None, victim.name):
                            await trio.sleep(0.2)
                    seen = await watch_through(base, "cam")
                    assert seen["video_frames"], seen

                    # it restarts (same id, same db dir) and rejoins; rebalancing moves some back
                    await victim.start()
                    census.pids[victim.name] = victim.pid

                    async def rejoined() -> bool:
                        nodes_json = (await api.get("/api/v3/cluster/node")).json()
                        online = {n["id"] for n in nodes_json if n["status"] == "online"}
                        return online == set(NAMES) and bool(census.last.get(victim.name))
                    with trio.fail_after(20):
                        while not await rejoined():
                            await trio.sleep(0.2)
                    await wait_running(census, ids, timeout=10)
                    nursery.cancel_scope.cancel()
                assert census.samples > 20
                assert census.duplicates == [], census.duplicates[:5]


async def test_partition_from_redis_fences_and_heals(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        async with proxies(rport, len(NAMES)) as links:
            link = {name: links[i] for i, name in enumerate(NAMES)}
            nodes = make_nodes(tmp_path, ffmpeg, {name: link[name].port for name in NAMES})
            async with started_nodes(nodes):
                api = Api(f"http://127.0.0.1:{api_port(nodes[0])}")
                census = Census({n.name: n.pid for n in nodes})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(census.run)
                    ids = {f"pt{i:02d}" for i in range(12)}
                    for i, pid in enumerate(sorted(ids)):
                        # every third FFmpeg ignores q (-nostdin): the fence's SIGKILL ends it
                        extra = {"options": ["-nostdin"]} if i % 3 == 0 else {}
                        resp = await api.post("/api/v3/process", cheap_process(pid, **extra))
                        assert resp.status_code == 200, resp.text
                    await wait_running(census, ids, timeout=20)
                    victim = max(NAMES, key=lambda n: len(census.last[n]))
                    assert census.last[victim]
                    held = sorted(census.last[victim])
                    link[victim].freeze()
                    frozen_at = trio.current_time()
                    # when do its leases expire? (asked of Redis directly, past the proxy)
                    ttl_ms = await trio.to_thread.run_sync(lambda: [int(subprocess.run(
                        ["redis-cli", "-p", str(rport), "pttl", f"trio-core:lease:{pid}"],
                        capture_output=True, text=True, check=True).stdout) for pid in held])
                    assert all(t > 0 for t in ttl_ms), ttl_ms
                    expiry = frozen_at + min(ttl_ms) / 1000
                    # the cut-off node stops every FFmpeg before its leases expire
                    victim_pid = next(n.pid for n in nodes if n.name == victim)
                    with trio.fail_after(LEASE):
                        while await trio.to_thread.run_sync(ffmpegs_of, victim_pid):
                            await trio.sleep(0.02)
                    stopped_at = trio.current_time()
                    assert stopped_at < expiry, (stopped_at - frozen_at, expiry - frozen_at)
                    if any(sorted(ids).index(pid) % 3 == 0 for pid in held):
                        log = (tmp_path / f"{victim}.log").read_text()
                        assert "close to its lease's end; SIGKILL" in log
                    # the others take over
                    await wait_running(census, ids, timeout=LEASE + 5, without=victim)
                    # config written meanwhile (through a healthy node) is not lost
                    other = next(n for n in nodes if n.name != victim)
                    healthy_api = Api(f"http://127.0.0.1:{api_port(other)}")
                    changed = sorted(ids)[0]
                    resp = await healthy_api.put(f"/api/v3/process/{changed}",
                                                 {"reference": "during-partition"})
                    assert resp.status_code == 200, resp.text
                    # the cut-off node answers 503 for what needs Redis
                    cut = Api(f"http://127.0.0.1:{api_port(next(n for n in nodes if n.name == victim))}")
                    assert (await cut.get("/api/v3/process")).status_code == 503
                    # heal: it reconnects, rejoins, no process ever runs twice
                    link[victim].heal()

                    async def back() -> bool:
                        about = (await api.get("/api/v3/cluster")).json()
                        return any(n["id"] == victim and n["status"] == "online"
                                   for n in about["nodes"]) and bool(census.last.get(victim))
                    with trio.fail_after(20):
                        while not await back():
                            await trio.sleep(0.2)
                    await wait_running(census, ids, timeout=10)
                    got = (await cut.get(f"/api/v3/process/{changed}/config")).json()
                    assert got["reference"] == "during-partition"
                    nursery.cancel_scope.cancel()
                assert census.duplicates == [], census.duplicates[:5]
