"""``cluster.redis_url`` through Redis Sentinel (``redis+sentinel://``): a node finds the
primary by asking a real Sentinel (Debian's ``redis-server --sentinel``), runs its processes,
and after the primary is killed and the Sentinel promoted the replica it carries on against
the new primary with the store intact. A malformed URL is refused at start, naming the
setting."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.api import Api, free_port, make_config, running_server, wait_for
from tests.helpers.cluster import REDIS, cheap_process, wait_port
from trio_core.config.settings import SettingError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

PASSWORD = "sentinel-test-pw"


def redis(tmp: Path, name: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    with open(tmp / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp / name),
                                 "--requirepass", PASSWORD, "--masterauth", PASSWORD, *extra],
                                stdout=log, stderr=log)
    wait_port(port)
    return proc


@contextmanager
def sentinel_setup(tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """A primary, a replica and one Sentinel watching them as ``main``; yields the primary's
    process, the replica's port and the Sentinel's port."""
    primary_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    procs = [redis(tmp, "primary", primary_port)]
    procs.append(redis(tmp, "replica", replica_port,
                       "--replicaof", "127.0.0.1", str(primary_port)))
    conf = tmp / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp}\n"
                    f"sentinel monitor main 127.0.0.1 {primary_port} 1\n"
                    f"sentinel auth-pass main {PASSWORD}\n"
                    "sentinel down-after-milliseconds main 1000\n"
                    "sentinel failover-timeout main 5000\n")
    with open(tmp / "sentinel.log", "ab") as log:
        procs.append(subprocess.Popen([REDIS, str(conf), "--sentinel"], stdout=log,
                                      stderr=log))
    try:
        wait_port(sentinel_port)
        yield procs[0], replica_port, sentinel_port
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def test_a_node_follows_the_sentinels_primary(tmp_path: Path, ffmpeg: str) -> None:
    with sentinel_setup(tmp_path) as (primary, replica_port, sentinel_port):
        url = f"redis+sentinel://:{PASSWORD}@127.0.0.1:{sentinel_port}/main/0"
        config = make_config(tmp_path / "node", ffmpeg, **{
            "api.address": f"127.0.0.1:{free_port()}", "cluster.enable": True,
            "cluster.redis_url": url, "cluster.node_id": "s1", "cluster.lease_seconds": 2,
            "cluster.max_cpu_usage": 0, "cluster.max_memory_usage": 0})
        async with running_server(config) as running:
            api = Api(f"http://127.0.0.1:{running.port}")
            about = (await api.get("/api/v3/cluster")).json()
            assert about["raft"]["address"] == f"redis+sentinel://***@127.0.0.1:{sentinel_port}/main/0"
            for pid in ("a", "b"):
                assert (await api.post("/api/v3/process", cheap_process(pid))).status_code == 200

            async def running_both() -> bool:
                resp = await api.get("/api/v3/process?filter=state")
                if resp.status_code != 200:  # 503 while Redis is out of reach
                    return False
                return sorted(p["id"] for p in resp.json()
                              if p["state"]["exec"] == "running") == ["a", "b"]
            await wait_for(running_both, timeout=15)

            # the primary dies; the Sentinel promotes the replica; the node follows it
            primary.kill()
            primary.wait()

            def promoted() -> bool:
                out = subprocess.run(["redis-cli", "-p", str(replica_port), "-a", PASSWORD,
                                      "--no-auth-warning", "ROLE"], capture_output=True,
                                     text=True, check=False).stdout
                return out.startswith("master")

            async def replica_promoted() -> bool:
                return promoted()
            await wait_for(replica_promoted, timeout=20)
            await wait_for(running_both, timeout=20)
            assert (await api.get("/api/v3/cluster/healthy")).json() is True
            assert sorted(p["id"] for p in (await api.get("/api/v3/process")).json()) == ["a", "b"]


@pytest.mark.parametrize("url", ["redis+sentinel://127.0.0.1:26379",
                                 "redis+sentinel://127.0.0.1:x/main",
                                 "sentinel://127.0.0.1:26379/main"])
def test_a_malformed_redis_url_is_refused(tmp_path: Path, ffmpeg: str, url: str) -> None:
    with pytest.raises(SettingError) as err:
        make_config(tmp_path, ffmpeg, **{"cluster.enable": True, "cluster.redis_url": url,
                                         "cluster.address": "http://127.0.0.1:1"})
    assert "cluster.redis_url" in str(err.value)
