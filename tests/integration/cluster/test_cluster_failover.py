"""Three trio-core nodes (child processes, loopback with distinct ports — no network
namespaces, no root) and Debian's redis-server (issue 20): a node cut off from Redis (its
Redis connection black-holed by a proxy the test controls) stops its FFmpegs before its
leases expire (SIGKILL for an FFmpeg that ignores ``q``), config written meanwhile is not
lost, the cut-off node answers 503, and healing makes no duplicate. A census of every node's
FFmpeg children (/proc, every 200 ms) checks that no process ever runs twice. (Spread,
``kill -9`` and rejoin through HAProxy run with the nodes in network namespaces:
test_cluster_netns.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api, free_port
from tests.helpers.cluster import (
    Census,
    NodeProcess,
    cheap_process,
    ffmpegs_of,
    node_env,
    proxies,
    redis_server,
    started_nodes,
    wait_running,
)
from tests.helpers.server_process import server_env

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
