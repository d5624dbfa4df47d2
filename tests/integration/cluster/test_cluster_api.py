"""The cluster's API over two in-process nodes and a real redis-server (issue 20): any node
creates, reads, updates, commands and deletes every process with Core's shapes and status
codes; state comes from the node that runs it; ``/api/v3/cluster`` decodes as Core v17's
models (field names and types of core_client's ``Cluster``/``ClusterNode``/... models, since
``core_client`` itself cannot be installed here); WHEP on a non-owner answers 307; leave
drains; a node id clash refuses to start; Redis unreachable at start is retried."""

from __future__ import annotations

import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.api import Api, assert_error, free_port, make_config, running_server, wait_for
from tests.helpers.cluster import cheap_process, ffmpeg_pids_of, redis_server
from trio_core.cluster.node import NodeIdClash
from trio_core.cluster.process_routes import LOCAL_PREFIX
from trio_core.cluster.remote_files import RemoteFiles
from trio_core.cluster.subsystem import ClusterSubsystem
from trio_core.server import Running

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

LEASE = 2

# core_client 2.x (Core v17) model fields -> accepted Python types (its pydantic models)
NUM = (int, float)
CLUSTER_FIELDS = {"id": str, "leader": (bool, dict), "raft": dict, "nodes": list,
                  "version": str, "degraded": bool, "degraded_error": str, "status": str}
RAFT_FIELDS = {"address": str, "state": str, "last_contact_ms": NUM, "num_peers": int,
               "log_term": int, "log_index": int}
NODE_FIELDS = {"id": str, "name": str, "version": str, "status": str, "error": str,
               "voter": bool, "leader": bool, "address": str, "created_at": str,
               "uptime_seconds": int, "last_contact_ms": NUM, "latency_ms": NUM,
               "core": dict, "resources": dict}
NODE_CORE_FIELDS = {"address": str, "status": str, "error": str, "last_contact_ms": NUM,
                    "latency_ms": NUM}
RESOURCES_FIELDS = {"cpu_limit": NUM, "cpu_used": NUM, "is_throttling": bool,
                    "memory_limit_bytes": int, "memory_used_bytes": int, "ncpu": NUM}
VERSION_FIELDS = dict.fromkeys(("arch", "build_date", "compiler", "number",
                                "repository_branch", "repository_commit"), str)
STORE_NODE_FIELDS = {"id": str, "state": str, "updated_at": str}


def conforms(obj: Any, fields: dict[str, Any]) -> None:
    assert isinstance(obj, dict), obj
    for name, kind in fields.items():
        assert name in obj, f"missing {name!r} in {obj}"
        assert isinstance(obj[name], kind) and not (kind is int and isinstance(obj[name], bool)), \
            f"{name!r}: {obj[name]!r} is not {kind}"


def leaves(exc: BaseException) -> list[Any]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def node_config(tmp: Path, ffmpeg: str, node_id: str, redis_port: int, **extra: Any) -> Any:
    port = free_port()
    values = {"api.address": f"127.0.0.1:{port}", "cluster.enable": True,
              "cluster.redis_url": f"redis://127.0.0.1:{redis_port}/0",
              "cluster.node_id": node_id, "cluster.lease_seconds": LEASE,
              "webrtc.enable": True, "webrtc.udp_mux_port": 0,
              "metrics.enable_prometheus": True,
              # one loaded machine for both nodes: no headroom-driven placement here
              "cluster.max_cpu_usage": 0, "cluster.max_memory_usage": 0}
    values.update(extra)
    return make_config(tmp / node_id, ffmpeg, **values)


async def owner_of(api: Api, pid: str) -> str | None:
    resp = await api.get("/api/v3/cluster/db/map/process")
    return resp.json().get(pid)


async def test_any_node_serves_every_process(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        async with AsyncExitStack() as stack:
            nodes: list[Running] = []
            for name in ("n1", "n2"):
                nodes.append(await stack.enter_async_context(
                    running_server(node_config(tmp_path, ffmpeg, name, rport))))
            assert all(r.subsystem(ClusterSubsystem).node is r.services.cluster for r in nodes)
            assert all(isinstance(r.services.storage_http.remote_files, RemoteFiles) for r in nodes)
            apis = {r.services.cluster.id: Api(f"http://127.0.0.1:{r.port}") for r in nodes}
            a, b = apis["n1"], apis["n2"]
            for i in range(4):
                resp = await a.post("/api/v3/process", cheap_process(f"p{i}"))
                assert resp.status_code == 200, resp.text
                assert resp.json()["id"] == f"p{i}"
            assert_error(await b.post("/api/v3/process", cheap_process("p0")), 400)

            async def all_running() -> bool:
                resp = await b.get("/api/v3/process?filter=state")
                states = {p["id"]: p["state"]["exec"] for p in resp.json()}
                return states == {f"p{i}": "running" for i in range(4)}
            await wait_for(all_running, timeout=15)
            owners = (await a.get("/api/v3/cluster/db/map/process")).json()
            assert set(owners) == {"p0", "p1", "p2", "p3"} and set(owners.values()) <= {"n1", "n2"}

            # a process run by the other node: state/report from it, config from Redis
            pid = next(p for p, n in owners.items() if n == "n1")
            # the owner's local view lists only what it runs
            local = (await a.get(f"{LOCAL_PREFIX}?filter=state")).json()
            assert {p["id"] for p in local} == {p for p, n in owners.items() if n == "n1"}
            state = (await b.get(f"/api/v3/process/{pid}/state")).json()
            assert state["exec"] == "running" and state["order"] == "start"

            async def report_from_owner() -> bool:  # FFmpeg's first lines, from the owner
                report = (await b.get(f"/api/v3/process/{pid}/report")).json()
                return bool(report["log"] or report["prelude"])
            await wait_for(report_from_owner, timeout=10)
            full = (await b.get(f"/api/v3/process/{pid}")).json()
            assert set(full) >= {"id", "type", "reference", "created_at", "updated_at",
                                 "config", "state", "report", "metadata"}
            assert full["config"]["output"][0]["options"][1].endswith(pid)

            # update through the non-owner: the owner restarts it with the new config
            resp = await b.put(f"/api/v3/process/{pid}", {"reference": "changed"})
            assert resp.status_code == 200 and resp.json()["reference"] == "changed"

            async def changed() -> bool:
                got = (await a.get(f"/api/v3/process/{pid}?filter=config,state")).json()
                return got["config"]["reference"] == "changed" and got["state"]["exec"] == "running"
            await wait_for(changed, timeout=10)

            # commands through either node
            assert (await b.put(f"/api/v3/process/{pid}/command", {"command": "stop"})).json() == "OK"

            async def stopped() -> bool:
                st = (await a.get(f"/api/v3/process/{pid}/state")).json()
                return st["order"] == "stop" and st["exec"] == "finished"
            await wait_for(stopped, timeout=10)
            assert (await a.put(f"/api/v3/process/{pid}/command", {"command": "start"})).json() == "OK"
            assert_error(await a.put("/api/v3/process/nope/command", {"command": "start"}), 400)
            assert_error(await a.put(f"/api/v3/process/{pid}/command", {"command": "x"}), 400)

            # global metadata (/api/v3/metadata, the Restreamer UI's settings) is shared too
            assert (await a.put("/api/v3/metadata/ui", {"theme": "dark"})).status_code == 200

            async def global_meta() -> bool:
                return (await b.get("/api/v3/metadata/ui")).json() == {"theme": "dark"}
            await wait_for(global_meta, timeout=5)
            assert (await b.put("/api/v3/metadata/ui", {"theme": "light"})).status_code == 200

            async def global_meta_back() -> bool:
                return (await a.get("/api/v3/metadata")).json() == {"ui": {"theme": "light"}}
            await wait_for(global_meta_back, timeout=5)

            # metadata is shared
            assert (await a.put(f"/api/v3/process/{pid}/metadata/k", {"v": 1})).status_code == 200
            assert (await b.get(f"/api/v3/process/{pid}/metadata/k")).json() == {"v": 1}
            assert (await b.get(f"/api/v3/process/{pid}/metadata")).json() == {"k": {"v": 1}}
            assert_error(await b.get(f"/api/v3/process/{pid}/metadata/none"), 404)

            # unknown ids: Core's codes
            assert_error(await a.get("/api/v3/process/nope"), 404)
            assert_error(await a.put("/api/v3/process/nope", {"reference": "x"}), 404)
            assert_error(await a.delete("/api/v3/process/nope"), 404)

            # the same routes under /api/v3/cluster/process
            listed = (await b.get("/api/v3/cluster/process?filter=config")).json()
            assert sorted(p["id"] for p in listed) == ["p0", "p1", "p2", "p3"]

            # WHEP on a node that does not run the process: 307 to the owner, token kept
            other = next(p for p, n in owners.items() if n == "n2")
            resp = await a.request("POST", f"/api/v3/process/{other}/whep?token=abc",
                                   content="v=0\r\n", headers={"Content-Type": "application/sdp"})
            assert resp.status_code == 307, resp.text
            n2_port = nodes[1].port
            assert resp.headers["Location"] == \
                f"http://127.0.0.1:{n2_port}/api/v3/process/{other}/whep?token=abc"

            # memfs/HLS and /api/v3/fs of a process: reachable through the other node
            hls = {"id": "hls", "options": ["-loglevel", "level+info"],
                   "input": [{"id": "a", "address": "sine=frequency=440:sample_rate=8000",
                              "options": ["-re", "-f", "lavfi"]}],
                   "output": [{"id": "hls", "address": "{memfs}/hls.m3u8",
                               "options": ["-c:a", "aac", "-f", "hls", "-hls_time", "1",
                                           "-hls_list_size", "3"]}]}
            assert (await a.post("/api/v3/process", hls)).status_code == 200

            async def hls_owner() -> str | None:
                return await owner_of(a, "hls")
            owner = await wait_for(hls_owner, timeout=10)
            here, there = (apis["n1"], apis["n2"]) if owner == "n2" else (apis["n2"], apis["n1"])

            async def playlist() -> bool:
                resp = await here.get("/memfs/hls.m3u8")
                return resp.status_code == 200 and "#EXTM3U" in resp.text
            await wait_for(playlist, timeout=15)
            local = await there.get("/memfs/hls.m3u8")
            assert local.status_code == 200
            segment = next(line for line in local.text.splitlines() if line.endswith(".ts"))
            proxied = await here.get(f"/api/v3/fs/mem/{segment}")
            assert proxied.status_code == 200 and proxied.content[:1] == b"\x47"  # MPEG-TS sync
            assert_error(await here.get("/api/v3/fs/mem/nothing-anywhere.ts"), 404)
            assert (await a.delete("/api/v3/process/hls")).status_code == 200

            # the cluster API in Core v17's shapes
            about = (await a.get("/api/v3/cluster")).json()
            conforms(about, CLUSTER_FIELDS)
            conforms(about["raft"], RAFT_FIELDS)
            assert [n["id"] for n in about["nodes"]] == ["n1", "n2"]
            for item in about["nodes"]:
                conforms(item, NODE_FIELDS)
                conforms(item["core"], NODE_CORE_FIELDS)
                conforms(item["resources"], RESOURCES_FIELDS)
            assert (await b.get("/api/v3/cluster/healthy")).json() is True
            assert len((await b.get("/api/v3/cluster/node")).json()) == 2
            conforms((await b.get("/api/v3/cluster/node/n1")).json(), NODE_FIELDS)
            conforms((await b.get("/api/v3/cluster/node/n1/version")).json(), VERSION_FIELDS)
            assert (await b.get("/api/v3/cluster/node/n1/state")).json() == {"state": "online"}
            assert_error(await b.get("/api/v3/cluster/node/zz"), 404)
            on_n1 = (await b.get("/api/v3/cluster/node/n1/process")).json()
            assert sorted(p["id"] for p in on_n1) == sorted(p for p, n in owners.items() if n == "n1")
            for item in (await a.get("/api/v3/cluster/db/node")).json():
                conforms(item, STORE_NODE_FIELDS)

            # metrics
            text = (await a.get("/metrics")).text
            assert 'cluster_nodes{node="n1"} 2.0' in text
            assert 'cluster_leases_held{node="n1"}' in text and "cluster_failovers_total" in text

            # reallocation: pin a process to the other node; it moves there
            current = (await a.get("/api/v3/cluster/db/map/process")).json()
            mover = sorted(current)[0]
            target = "n1" if current[mover] == "n2" else "n2"
            body = [{"target_node_id": target, "process_ids": [{"id": mover, "domain": ""}]}]
            assert (await b.put("/api/v3/cluster/reallocation", body)).json() == "OK"

            async def pinned() -> bool:
                return await owner_of(a, mover) == target
            await wait_for(pinned, timeout=10)
            bad = [{"target_node_id": "nobody", "process_ids": [{"id": mover, "domain": ""}]}]
            assert_error(await b.put("/api/v3/cluster/reallocation", bad), 400)
            missing = [{"target_node_id": target, "process_ids": [{"id": "zz", "domain": ""}]}]
            assert_error(await b.put("/api/v3/cluster/reallocation", missing), 404)

            # leave: n1 drains, one process at a time, to n2
            assert (await b.put("/api/v3/cluster/leave", {"id": "n1"})).json() == "OK"

            async def drained() -> bool:
                m = (await a.get("/api/v3/cluster/db/map/process")).json()
                return len(m) == 4 and set(m.values()) == {"n2"}
            await wait_for(drained, timeout=20)
            assert nodes[0].services.cluster.moves >= 1
            assert (await a.get("/api/v3/cluster/node/n1/state")).json() == {"state": "leave"}
            assert_error(await a.put("/api/v3/cluster/node/n1/state", {"state": "gone"}), 400)
            assert (await a.put("/api/v3/cluster/node/n1/state", {"state": "online"})).json() == "OK"
            assert (await a.get("/api/v3/cluster/node/n1/state")).json() == {"state": "online"}

            # delete through the other node: the owner stops it
            assert (await a.delete(f"/api/v3/process/{other}")).json() == "OK"
            assert (await b.get(f"/api/v3/process/{other}")).status_code == 404

            async def stopped_there() -> bool:
                return other not in nodes[1].supervisor.ids()
            await wait_for(stopped_there, timeout=5)


async def test_node_id_clash_refuses_to_start(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        async with running_server(node_config(tmp_path, ffmpeg, "same", rport)):
            clashes: list[NodeIdClash] = []
            try:
                with trio.fail_after(LEASE * 3):
                    async with running_server(node_config(tmp_path / "b", ffmpeg, "same", rport)):
                        pass
            except* NodeIdClash as group:
                clashes += leaves(group)
            assert len(clashes) == 1
            assert "already used by a running node" in str(clashes[0])


async def test_redis_unreachable_at_start_is_retried(
        tmp_path: Path, ffmpeg: str, caplog: pytest.LogCaptureFixture) -> None:
    rport = free_port()
    caplog.set_level(logging.ERROR, logger="trio_core.cluster.node")
    config = node_config(tmp_path, ffmpeg, "late", rport)
    async with trio.open_nursery() as nursery:
        started = trio.Event()

        async def serve_it() -> None:
            async with running_server(config) as running:
                started.set()
                assert running.services.cluster.ready.is_set()
                await trio.sleep_forever()
        nursery.start_soon(serve_it)
        with trio.fail_after(10):
            while "is unreachable" not in caplog.text:
                await trio.sleep(0.1)
        assert f"Redis at redis://127.0.0.1:{rport}/0 is unreachable" in caplog.text
        assert not started.is_set()
        with redis_server(tmp_path / "redis", port=rport):
            with trio.fail_after(15):
                await started.wait()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("persist", [True, False], ids=["snapshot", "no-persistence"])
async def test_short_redis_restart_stops_nothing(tmp_path: Path, ffmpeg: str,
                                                 persist: bool) -> None:
    """Redis stops and comes back on the same port within the tolerated outage (lease/2 minus
    a renewal interval): every FFmpeg keeps running (same pids), nothing is started twice;
    without persistence the nodes write the store and their leases back."""
    lease = 4
    rport = free_port()
    with redis_server(tmp_path / "redis", port=rport, persist=persist) as (redis, _):
        async with AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(running_server(node_config(
                tmp_path, ffmpeg, name, rport, **{"cluster.lease_seconds": lease})))
                for name in ("r1", "r2")]
            api = Api(f"http://127.0.0.1:{nodes[0].port}")
            ids = {f"q{i}" for i in range(4)}
            for pid in sorted(ids):
                assert (await api.post("/api/v3/process", cheap_process(pid))).status_code == 200

            def ffmpeg_pids() -> dict[str, list[int]]:  # both nodes are in this process
                return ffmpeg_pids_of(os.getpid())

            async def all_running() -> bool:
                return set(ffmpeg_pids()) == ids
            await wait_for(all_running, timeout=15)
            before = ffmpeg_pids()
            # restart Redis: SIGTERM (a snapshot is saved when persisting), start it again
            redis.terminate()
            redis.wait()
            with redis_server(tmp_path / "redis", port=rport, persist=persist):
                await trio.sleep(lease)  # renewals go on against the new Redis
                assert ffmpeg_pids() == before
                assert all(r.services.cluster.fenced == 0 for r in nodes)
                owners = (await api.get("/api/v3/cluster/db/map/process")).json()
                assert set(owners) == ids
                listed = (await api.get("/api/v3/process")).json()
                assert {p["id"] for p in listed} == ids
