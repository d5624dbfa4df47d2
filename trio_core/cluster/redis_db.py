"""The cluster's shared state in Redis, through coredis (on trio via anyio).

Keys (``trio-core:`` prefix; see docs/CLUSTER.md):

* ``processes`` hash: process id -> JSON record ``{config, order, created_at, updated_at, rev,
  reload, restart}`` (``rev``/``reload``/``restart`` count changes and one-shot commands);
* ``metadata`` hash: process id -> JSON object of its metadata; ``system`` hash: key -> JSON
  (the global metadata, ``/api/v3/metadata``);
* ``version``: incremented with every change of the two hashes (nodes poll it); ``epoch``:
  random, set once per data set (a change means Redis lost its data);
* ``pins`` hash: process id -> node (``PUT /api/v3/cluster/reallocation``);
* ``nodes`` set of node ids; ``node:<id>``: JSON of the node, TTL ``lease_seconds``;
  ``node_states`` hash: node id -> wanted state (``leave`` drains it);
* ``lease:<id>`` = ``<node>:<token>``, TTL ``lease_seconds``; ``fence:<id>`` the fencing counter;
* ``moving``: the one process being handed over between live nodes (TTL ``lease_seconds``).

Every method is one round trip (a Lua script where it must be atomic) and raises coredis's
``RedisError`` (``ConnectionError``, ``TimeoutError``) when Redis cannot be reached; callers
bound each call with a deadline. Cancellation: a cancelled call leaves at most that one
command unapplied or applied (each is atomic on the server).
"""

from __future__ import annotations

import json
import os
from typing import Any

import coredis
from coredis.exceptions import RedisError
from coredis.tokens import PureToken

__all__ = ["PREFIX", "ClusterDB", "RedisError", "Record"]

PREFIX = "trio-core:"
Record = dict[str, Any]

_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local token = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: lease keys then fence keys (n each); ARGV: node, px, tokens... -> 1 kept / 0 lost each.
# A lease that is gone but whose fencing counter still is ours (nobody acquired it since:
# e.g. Redis restarted from a snapshot older than the lease) is taken again.
_RENEW = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local want = ARGV[1] .. ':' .. ARGV[2 + i]
  local cur = redis.call('get', KEYS[i])
  if cur == want then
    redis.call('pexpire', KEYS[i], ARGV[2])
    out[i] = 1
  elseif not cur then
    local fence = tonumber(redis.call('get', KEYS[n + i]) or '0')
    local token = tonumber(ARGV[2 + i])
    if fence <= token then
      redis.call('set', KEYS[n + i], token)
      redis.call('set', KEYS[i], want, 'PX', ARGV[2])
      out[i] = 1
    else
      out[i] = 0
    end
  else
    out[i] = 0
  end
end
return out
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_REGISTER = """
local cur = redis.call('get', KEYS[1])
if cur and cjson.decode(cur)['token'] ~= ARGV[2] then return cur end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('sadd', KEYS[2], ARGV[4])
return false
"""

_UNREGISTER = """
local cur = redis.call('get', KEYS[1])
if cur and cjson.decode(cur)['token'] == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class ClusterDB:
    """The cluster's keys in one Redis, over a running coredis client."""

    def __init__(self, client: coredis.Redis[str]) -> None:
        self.r = client

    # -- connection --------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.r.ping()

    # -- nodes -------------------------------------------------------------------------------

    async def register(self, node_id: str, doc: dict[str, Any], ttl_ms: int) -> dict[str, Any] | None:
        """Set ``node:<id>`` unless another instance (other ``token``) holds it: then its doc."""
        other = await self.r.eval(_REGISTER, [_key("node", node_id), _key("nodes")],
                                  [json.dumps(doc), doc["token"], ttl_ms, node_id])
        return json.loads(other) if other else None

    async def unregister(self, node_id: str, token: str) -> None:
        await self.r.eval(_UNREGISTER, [_key("node", node_id)], [token])

    async def node_raw(self, node_id: str) -> tuple[dict[str, Any] | None, int]:
        """The node's doc (None when gone) and its remaining TTL in ms."""
        async with self.r.pipeline(transaction=False) as p:
            value = p.get(_key("node", node_id))
            ttl = p.pttl(_key("node", node_id))
        raw = await value
        return (json.loads(raw) if raw else None), int(await ttl)

    async def nodes(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Live nodes (id -> doc) and every node id ever registered."""
        ids = sorted(await self.r.smembers(_key("nodes")))
        if not ids:
            return {}, []
        values = await self.r.mget([_key("node", i) for i in ids])
        live = {i: json.loads(v) for i, v in zip(ids, values, strict=True) if v}
        return live, ids

    async def node_states(self) -> dict[str, str]:
        """Wanted states set through the API (``leave``, ``maintenance``, ``online``)."""
        return dict(await self.r.hgetall(_key("node_states")))

    async def set_node_state(self, node_id: str, state: str) -> None:
        await self.r.hset(_key("node_states"), {node_id: state})

    async def forget_node(self, node_id: str) -> None:
        await self.r.srem(_key("nodes"), [node_id])

    # -- leases ------------------------------------------------------------------------------

    async def acquire(self, process_id: str, node_id: str, ttl_ms: int) -> int:
        """The new fencing token, or 0 when somebody holds the lease."""
        return int(await self.r.eval(_ACQUIRE, [_key("lease", process_id), _key("fence", process_id)],
                                     [node_id, ttl_ms]))

    async def heartbeat(self, node_id: str, doc: dict[str, Any], ttl_ms: int,
                        leases: list[tuple[str, int]]) -> list[bool]:
        """Refresh ``node:<id>`` and renew ``leases`` ((process id, token)) in one round trip;
        True for each lease still held."""
        async with self.r.pipeline(transaction=False) as p:
            p.set(_key("node", node_id), json.dumps(doc), px=ttl_ms)
            p.sadd(_key("nodes"), [node_id])  # back after Redis lost its data
            renewed = None
            if leases:
                keys = [_key("lease", pid) for pid, _ in leases]
                keys += [_key("fence", pid) for pid, _ in leases]
                renewed = p.eval(_RENEW, keys, [node_id, ttl_ms, *[t for _, t in leases]])
        if renewed is None:
            return []
        return [bool(x) for x in await renewed]

    async def release(self, process_id: str, node_id: str, token: int) -> None:
        await self.r.eval(_RELEASE, [_key("lease", process_id)], [f"{node_id}:{token}"])

    async def holders(self, process_ids: list[str]) -> dict[str, tuple[str, int]]:
        """The lease holder (node, token) of each process that has one."""
        if not process_ids:
            return {}
        values = await self.r.mget([_key("lease", pid) for pid in process_ids])
        out = {}
        for pid, value in zip(process_ids, values, strict=True):
            if value:
                node, _, token = value.rpartition(":")
                out[pid] = (node, int(token))
        return out

    async def holder(self, process_id: str) -> tuple[str, int] | None:
        return (await self.holders([process_id])).get(process_id)

    async def begin_move(self, process_id: str, ttl_ms: int) -> bool:
        """Take the cluster-wide "one process moves at a time" token."""
        return bool(await self.r.set(_key("moving"), process_id,
                                     condition=PureToken.NX, px=ttl_ms))

    async def moving(self) -> str | None:
        return await self.r.get(_key("moving"))

    async def end_move(self, process_id: str) -> None:
        await self.r.eval(_RELEASE, [_key("moving")], [process_id])

    # -- processes ---------------------------------------------------------------------------

    async def version(self) -> int:
        return int(await self.r.get(_key("version")) or 0)

    async def version_and_epoch(self) -> tuple[int, str]:
        """The store's version and its epoch: a random value set once per Redis data set, so a
        changed epoch means Redis lost its data (restarted without persistence, flushed)."""
        version, epoch = await self.r.mget([_key("version"), _key("epoch")])
        if epoch is None:
            await self.r.set(_key("epoch"), os.urandom(8).hex(), condition=PureToken.NX)
            version, epoch = await self.r.mget([_key("version"), _key("epoch")])
        return int(version or 0), str(epoch)

    async def records(self) -> dict[str, Record]:
        raw = await self.r.hgetall(_key("processes"))
        return {pid: json.loads(v) for pid, v in raw.items()}

    async def record(self, process_id: str) -> Record | None:
        raw = await self.r.hget(_key("processes"), process_id)
        return json.loads(raw) if raw else None

    async def create(self, process_id: str, record: Record) -> bool:
        """False when the id is taken."""
        created = await self.r.hsetnx(_key("processes"), process_id, json.dumps(record))
        if created:
            await self.r.incr(_key("version"))
        return bool(created)

    async def put(self, process_id: str, record: Record, old_id: str | None = None) -> None:
        """Write a record (renaming ``old_id`` when given: its metadata moves along)."""
        renamed = old_id is not None and old_id != process_id
        meta = await self.r.hget(_key("metadata"), old_id) if renamed and old_id else None
        async with self.r.pipeline(transaction=True) as p:
            if renamed and old_id:
                p.hdel(_key("processes"), [old_id])
                p.hdel(_key("metadata"), [old_id])
                if meta:
                    p.hset(_key("metadata"), {process_id: meta})
            p.hset(_key("processes"), {process_id: json.dumps(record)})
            p.incr(_key("version"))

    async def delete(self, process_id: str) -> bool:
        async with self.r.pipeline(transaction=True) as p:
            gone = p.hdel(_key("processes"), [process_id])
            p.hdel(_key("metadata"), [process_id])
            p.hdel(_key("pins"), [process_id])
            p.incr(_key("version"))
        return bool(await gone)

    async def metadata(self, process_id: str) -> dict[str, Any] | None:
        raw = await self.r.hget(_key("metadata"), process_id)
        return json.loads(raw) if raw else None

    async def all_metadata(self) -> dict[str, dict[str, Any]]:
        raw = await self.r.hgetall(_key("metadata"))
        return {pid: json.loads(v) for pid, v in raw.items()}

    async def set_metadata(self, process_id: str, meta: dict[str, Any] | None) -> None:
        if meta:
            await self.r.hset(_key("metadata"), {process_id: json.dumps(meta)})
        else:
            await self.r.hdel(_key("metadata"), [process_id])

    async def system(self) -> dict[str, Any]:
        """The global (non-process) metadata."""
        raw = await self.r.hgetall(_key("system"))
        return {k: json.loads(v) for k, v in raw.items()}

    async def set_system(self, meta: dict[str, Any]) -> None:
        """Replace the global metadata (one MULTI)."""
        async with self.r.pipeline(transaction=True) as p:
            p.delete([_key("system")])
            if meta:
                p.hset(_key("system"), {k: json.dumps(v) for k, v in meta.items()})
            p.incr(_key("version"))

    async def pins(self) -> dict[str, str]:
        return dict(await self.r.hgetall(_key("pins")))

    async def set_pins(self, pins: dict[str, str]) -> None:
        if pins:
            await self.r.hset(_key("pins"), pins)
            await self.r.incr(_key("version"))
