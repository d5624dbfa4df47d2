"""The cluster's Redis scripts against a real redis-server (trio_core/cluster/redis_db.py):
lease acquisition with the fencing counter, renewal, loss, re-acquisition after Redis lost
the key, release by the holder only, node registration and clashes, the process records."""

from __future__ import annotations

from pathlib import Path

import coredis
import pytest
import trio

from tests.helpers.cluster import redis_server
from trio_core.cluster.redis_db import ClusterDB

pytestmark = [pytest.mark.xdist_group("cluster")]


async def test_leases_fencing_and_records(tmp_path: Path) -> None:
    with redis_server(tmp_path) as (_, port):
        client = coredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
        async with client:
            db = ClusterDB(client)
            await db.ping()
            # acquire: the first token is 1; a held lease cannot be taken
            assert await db.acquire("p", "a", 300) == 1
            assert await db.acquire("p", "b", 300) == 0
            assert await db.holder("p") == ("a", 1)
            # renewal keeps it past the first TTL
            for _ in range(3):
                await trio.sleep(0.15)
                assert await db.heartbeat("a", {"id": "a", "token": "t"}, 300, [("p", 1)]) == [True]
            # expiry: another node acquires with a higher token; the old holder cannot renew
            await trio.sleep(0.4)
            assert await db.holder("p") is None
            assert await db.acquire("p", "b", 5000) == 2
            assert await db.heartbeat("a", {"id": "a", "token": "t"}, 300, [("p", 1)]) == [False]
            assert await db.holder("p") == ("b", 2)
            # release only by the holder with its token
            await db.release("p", "a", 1)
            assert await db.holder("p") == ("b", 2)
            await db.release("p", "b", 2)
            assert await db.holder("p") is None
            # a lease Redis lost (restart from an old snapshot) comes back to a holder whose
            # token is still the newest, never to a stale one
            assert await db.acquire("q", "a", 5000) == 1
            await client.delete(["trio-core:lease:q"])
            assert await db.heartbeat("a", {"id": "a", "token": "t"}, 5000, [("q", 1)]) == [True]
            assert await db.holder("q") == ("a", 1)
            await client.delete(["trio-core:lease:q"])
            await client.set("trio-core:fence:q", "5")
            assert await db.heartbeat("a", {"id": "a", "token": "t"}, 5000, [("q", 1)]) == [False]
            # nodes: one instance per id
            assert await db.register("n1", {"id": "n1", "token": "x", "beat": 1}, 5000) is None
            assert await db.register("n1", {"id": "n1", "token": "x", "beat": 2}, 5000) is None
            other = await db.register("n1", {"id": "n1", "token": "y", "beat": 1}, 5000)
            assert other is not None and other["token"] == "x"
            live, known = await db.nodes()
            assert set(live) == {"n1", "a"} and known == ["a", "n1"]
            await db.unregister("n1", "y")  # not its registration: kept
            assert (await db.node_raw("n1"))[0] is not None
            await db.unregister("n1", "x")
            assert (await db.node_raw("n1"))[0] is None
            # records: create once, rename moves the metadata, delete
            assert await db.create("r", {"config": {"id": "r"}, "order": "stop"})
            assert not await db.create("r", {"config": {"id": "r"}, "order": "stop"})
            await db.set_metadata("r", {"k": 1})
            await db.put("s", {"config": {"id": "s"}, "order": "start"}, "r")
            assert set(await db.records()) == {"s"}
            assert await db.metadata("s") == {"k": 1} and await db.metadata("r") is None
            assert await db.version() == 2
            assert await db.delete("s") and not await db.delete("s")
            # the one-move-at-a-time token
            assert await db.begin_move("s", 5000) and not await db.begin_move("t", 5000)
            assert await db.moving() == "s"
            await db.end_move("s")
            assert await db.moving() is None
