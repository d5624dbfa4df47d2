"""This node's member of the cluster: registration, heartbeat and lease renewal, self-fencing,
placement and the local supervisor kept in line with the shared store.

Contract:

* ``await nursery.start(node.run)`` connects to Redis (retrying every second, logging a clear
  error, while it is unreachable), registers ``node:<id>`` (:class:`NodeIdClash`, a
  :class:`StartupError`, when a *running* node already uses the id: its key is still being
  refreshed; a key left by a dead node is waited out, at most ``lease_seconds``), seeds an
  empty shared store from the local ``db.json`` cache, reports ready, then runs until
  cancelled: a heartbeat/renewal loop (every ``lease_seconds / 5``), a fencing loop (every
  0.1 s) and a reconcile loop (every ``min(0.5, lease_seconds / 10)`` s, sooner when
  :meth:`wake` is called).
* **Leases.** A process runs on this node only while it holds the process's lease
  (:mod:`.lease`). The fencing hook (:class:`FenceHook`, registered with the supervisor) refuses
  every FFmpeg start (``HookAbort``) unless the lease is held and Redis still names this node
  with the current fencing token — so a stale node coming back never runs a process it lost.
  When renewals fail (Redis unreachable, partition) the process is stopped at half the lease
  and killed at 0.8 of it, before another node can take it.
* **Placement** (:mod:`.placement`): every tick the assignment of all processes over the
  healthy (online, live) nodes is computed; this node acquires the free leases of processes
  assigned to it (a dead node's leases expire: failover within ``lease_seconds`` + a tick),
  hands over at most one process at a time (cluster-wide ``moving`` token) whose assignment
  moved to another live node, and stops what it runs without a lease. A process with a
  ``#other:output=`` input is placed on ``other``'s node (``process_dependencies``) and
  added after it, so the reference resolves in the local supervisor.
* **Shared store.** The local supervisor holds only the processes this node runs; their
  config, order and one-shot commands come from the Redis records (``rev``, ``reload``,
  ``restart`` counters). ``db.json`` is rewritten as a cache of the whole store when it
  changes (a node can seed an empty Redis from it).
* Cancellation: the loops end; then, shielded and bounded (2 s), the leases still held are
  released and ``node:<id>`` is removed, so a graceful stop fails over at once. (The server
  cancels the supervisor — every FFmpeg stopped — before its subsystems.)
"""

from __future__ import annotations

import copy
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from trio_core import __version__
from trio_core.cluster import compatibility as compat
from trio_core.cluster.lease import LeaseBook
from trio_core.cluster.placement import Need, assign, dependency_roots, headroom
from trio_core.config.startup_error import StartupError
from trio_core.engine.hooks import HookAbort, RunContext
from trio_core.engine.process_config import ConfigError, ProcessConfig
from trio_core.engine.store import StoreData, StoredProcess, StoreError
from trio_core.engine.supervisor import ProcessNotFound

if TYPE_CHECKING:
    from trio_core.cluster.redis_db import ClusterDB, Record
    from trio_core.config.settings import Config
    from trio_core.engine.pid_records import PidRecords
    from trio_core.engine.store import Store
    from trio_core.engine.supervisor import Supervisor

__all__ = ["ClusterNode", "ClusterSettings", "FenceHook", "NodeIdClash", "RedisUnavailable",
           "SystemMetadataStore"]

log = logging.getLogger(__name__)

#: an input reading another process's output (Core's ``#<id>:output=<oid>``)
_REFERENCE_RE = re.compile(r"^#(.+):output=(.+)", re.DOTALL)

RECONCILE_INTERVAL = 0.5  # at most; lease/10 with shorter leases
FENCE_INTERVAL = 0.1
SHUTDOWN_DEADLINE = 2.0


class NodeIdClash(StartupError):
    """Another running node uses this ``cluster.node_id``."""


class RedisUnavailable(Exception):
    """Redis did not answer in time (or the connection failed)."""


@dataclass(frozen=True)
class ClusterSettings:
    redis_url: str
    node_id: str
    address: str
    lease_seconds: int
    relay: bool
    name: str = ""
    max_cpu_usage: int = 0  # percent; 0 = no limit (placement headroom)
    max_memory_usage: int = 0
    #: the settings the compatibility check compares (compatibility.SETTING_NAMES)
    compat_config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_config(cls, config: Config, instance_id: str, name: str = "") -> ClusterSettings:
        address = config["cluster.address"]
        if not address:
            host, port = config.api_host or "127.0.0.1", config.api_port
            address = f"http://{host}:{port}"
        return cls(redis_url=config["cluster.redis_url"],
                   node_id=config["cluster.node_id"] or instance_id,
                   address=address.rstrip("/"), lease_seconds=config["cluster.lease_seconds"],
                   relay=config["cluster.relay"], name=name,
                   max_cpu_usage=config["cluster.max_cpu_usage"],
                   max_memory_usage=config["cluster.max_memory_usage"],
                   compat_config={key: config[key] for key in compat.SETTING_NAMES})


class FenceHook:
    """Refuses every FFmpeg start of a process whose lease this node does not hold (checked
    against Redis: the fencing token must still be the current one)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def on_start(self, ctx: RunContext) -> None:
        await self.node.check_fence(ctx.process.id)

    async def on_stop(self, ctx: RunContext, final: bool) -> None:
        return None


class SystemMetadataStore:
    """The supervisor's store in a cluster: it keeps only the global metadata
    (``/api/v3/metadata``), which lives in Redis; processes are the node's business.
    ``save`` (called by the supervisor on every change) marks a changed metadata for the
    node's writer task; the node brings Redis's version in (:meth:`ClusterNode.reconcile`)."""

    def __init__(self) -> None:
        self.current: dict[str, Any] = {}
        self.changed = trio.Event()
        self.path = None  # no file of its own (the node writes db.json as the store's cache)

    def load(self) -> StoreData:
        return StoreData(system_metadata=copy.deepcopy(self.current))

    def save(self, data: StoreData) -> None:
        if data.system_metadata != self.current:
            self.current = copy.deepcopy(data.system_metadata)
            self.changed.set()


class ClusterNode:
    """See the module docstring."""

    def __init__(self, settings: ClusterSettings, supervisor: Supervisor, *,
                 cache: Store | None = None, pid_records: PidRecords | None = None,
                 system: SystemMetadataStore | None = None,
                 connect: Callable[[str], Any] | None = None) -> None:
        self.settings = settings
        self.id = settings.node_id
        self.supervisor = supervisor
        self.cache = cache
        self.system = system
        self.pid_records = pid_records
        self._connect = connect
        self.book = LeaseBook(settings.lease_seconds)
        self.db: ClusterDB | None = None
        self.token = secrets.token_hex(8)
        self.state = "online"  # "leave" while draining
        self.started_at = time.time()
        self.ready = trio.Event()
        self.ttl_ms = settings.lease_seconds * 1000
        self.op_timeout = max(0.5, min(2.0, settings.lease_seconds / 4))
        self.heartbeat_interval = max(0.2, settings.lease_seconds / 5)
        self.reconcile_interval = min(RECONCILE_INTERVAL, settings.lease_seconds / 10)
        self._wake = trio.Event()
        self._applied: dict[str, tuple[int, str, int, int]] = {}
        self._beat = 0
        self._cache_version = -1
        self._epoch: str | None = None
        self._quarantine_until = 0.0
        self._records_cache: dict[str, Record] = {}
        self._pins_cache: dict[str, str] = {}
        self._metadata_cache: dict[str, Any] = {}
        self._killed: set[str] = set()
        self._last_contact = 0.0  # monotonic time of the last successful heartbeat
        # what the last reconcile saw (the API answers from it between ticks)
        self.live_nodes: dict[str, dict[str, Any]] = {}
        self.known_nodes: list[str] = []
        self.assignment: dict[str, str | None] = {}
        self.holders: dict[str, tuple[str, int]] = {}
        # counters (GET /api/v3/cluster, metrics)
        self.failovers = 0
        self.moves = 0
        self.fenced = 0
        #: what the compatibility check compares (set before this node registers)
        self.compat: dict[str, Any] | None = None
        #: nodes the last reconcile found incompatible: {node id: Core's error text}
        self.incompatible: dict[str, str] = {}
        supervisor.add_hook(FenceHook(self))

    # -- public ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Reconcile now (an API write on this node changed the store)."""
        self._wake.set()

    def leases_held(self) -> int:
        return len(self.book.held)

    def require_db(self) -> ClusterDB:
        if self.db is None:
            raise RedisUnavailable("the cluster is not connected to Redis yet")
        return self.db

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``await fn(*args)`` bounded by the operation timeout; RedisUnavailable otherwise."""
        from trio_core.cluster.redis_db import RedisError
        self.require_db()
        with trio.move_on_after(self.op_timeout) as scope:
            try:
                return await fn(*args)
            except RedisError as exc:
                raise RedisUnavailable(f"Redis: {exc}") from None
        if scope.cancelled_caught:
            raise RedisUnavailable(f"Redis did not answer within {self.op_timeout:g} s")
        return None  # pragma: no cover

    def node_doc(self) -> dict[str, Any]:
        import psutil
        mem = psutil.virtual_memory()
        cpu = psutil.cpu_percent(interval=None)
        ncpu = psutil.cpu_count() or 1
        max_cpu, max_mem = self.settings.max_cpu_usage, self.settings.max_memory_usage
        needs = process_needs(self._records_cache)
        held = [needs[pid] for pid in self.book.held if pid in needs]
        return {
            "id": self.id, "name": self.settings.name, "token": self.token,
            "address": self.settings.address, "version": __version__, "state": self.state,
            "started_at": self.started_at, "updated_at": time.time(), "beat": self._beat,
            "compat": self.compat,
            "max_processes": self.supervisor.max_processes,
            "processes": len(self.book.held),
            "resources": {"ncpu": float(ncpu), "cpu_used": cpu,
                          "cpu_limit": float(max_cpu or 100),
                          "memory_used_bytes": int(mem.total - mem.available),
                          "memory_limit_bytes": int(mem.total * (max_mem or 100) / 100),
                          "memory_total_bytes": int(mem.total),
                          "is_throttling": cpu > 95.0,
                          # placement headroom (placement.headroom): thresholds, and the
                          # limits of the processes this node holds
                          "max_cpu_usage": max_cpu, "max_memory_usage": max_mem,
                          "reserved_cpu_usage": round(sum(n.cpu for n in held), 3),
                          "reserved_memory_mbytes": round(sum(n.memory_mbytes
                                                              for n in held), 3)},
        }

    def last_contact_ms(self) -> float:
        if not self._last_contact:
            return 0.0
        return (trio.current_time() - self._last_contact) * 1000

    async def check_fence(self, process_id: str) -> None:
        """HookAbort unless this node holds the lease with the current fencing token."""
        token = self.book.token(process_id)
        if token is None or not self.book.may_start(process_id, trio.current_time()):
            raise HookAbort("cluster: this node holds no valid lease on the process; not started")
        try:
            holder = await self.call(self.require_db().holder, process_id)
        except RedisUnavailable as exc:
            raise HookAbort(f"cluster: cannot check the lease ({exc}); not started") from None
        if holder != (self.id, token):
            raise HookAbort(f"cluster: fencing token {token} is stale (lease holder now "
                            f"{holder[0] + ':' + str(holder[1]) if holder else 'nobody'}); "
                            "not started")

    # -- run ---------------------------------------------------------------------------------

    def _client(self) -> Any:
        """An async context manager yielding the Redis client (:mod:`.redis_url`)."""
        if self._connect is not None:
            return self._connect(self.settings.redis_url)
        from coredis.retry import NoRetryPolicy

        from trio_core.cluster.redis_url import open_client
        return open_client(self.settings.redis_url, decode_responses=True,
                           stream_timeout=self.op_timeout, connect_timeout=self.op_timeout,
                           retry_policy=NoRetryPolicy())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        except BaseExceptionGroup as group:  # coredis's task group wraps: the clash itself
            clash = group.subgroup(NodeIdClash)
            while isinstance(clash, BaseExceptionGroup):
                clash = clash.exceptions[0]
            if clash is not None:
                raise clash from None
            raise

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        from trio_core.cluster.redis_db import ClusterDB
        async with self._client() as client:
            db = ClusterDB(client)
            self.db = db
            try:
                if self.compat is None:
                    from trio_core.ffmpeg.skills import probe_build
                    build = await probe_build(self.supervisor.ffmpeg, record=self.pid_records)
                    self.compat = compat.fingerprint(self.settings.compat_config, build,
                                                     __version__)
                await self._connect_retrying(db)
                await self._register(db)
                await self._seed(db)
                self._last_contact = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._heartbeat_loop, db)
                    nursery.start_soon(self._fence_loop)
                    nursery.start_soon(self._reconcile_loop, db)
                    if self.system is not None:
                        nursery.start_soon(self._system_writer, db, self.system)
                    self.ready.set()
                    log.info("cluster: node %r joined (%s, lease %d s)", self.id,
                             self.settings.address, self.settings.lease_seconds)
                    task_status.started()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_DEADLINE):
                    await self._leave(db)
                self.db = None

    async def _connect_retrying(self, db: ClusterDB) -> None:
        from trio_core.cluster.redis_db import RedisError
        attempt = 0
        while True:
            attempt += 1
            reason = "no answer in time"
            with trio.move_on_after(self.op_timeout * 2):
                try:
                    await db.ping()
                    return
                except RedisError as exc:
                    reason = str(exc)
            from trio_core.cluster.redis_url import redacted
            log.error("cluster: Redis at %s is unreachable (%s); retrying in 1 s (attempt %d)",
                      redacted(self.settings.redis_url), reason, attempt)
            await trio.sleep(1.0)

    async def _register(self, db: ClusterDB) -> None:
        deadline = trio.current_time() + self.settings.lease_seconds * 1.5 + 1
        first_beat: Any = None
        while True:
            other = await self.call(db.register, self.id, self.node_doc(), self.ttl_ms)
            if other is None:
                return
            beat = (other.get("beat"), other.get("updated_at"))
            if first_beat is None:
                first_beat = beat
                log.warning("cluster: node id %r is registered by another instance (%s); "
                            "waiting for it to expire", self.id, other.get("address"))
            elif beat != first_beat or trio.current_time() > deadline:
                raise NodeIdClash(
                    f"cluster.node_id {self.id!r} is already used by a running node at "
                    f"{other.get('address')} (started {time.ctime(other.get('started_at', 0))}); "
                    "give every node its own cluster.node_id")
            await trio.sleep(0.25)

    async def _seed(self, db: ClusterDB) -> None:
        """An empty shared store is seeded from this node's db.json cache; the global
        metadata is read (before the supervisor loads it)."""
        data = None
        if self.cache is not None:
            try:
                data = self.cache.load()
            except StoreError as exc:
                log.warning("cluster: db.json cache not used: %s", exc)
        if self.system is not None:
            system = await self.call(db.system)
            if not system and data is not None and data.system_metadata:
                system = dict(data.system_metadata)
                await self.call(db.set_system, system)
            self.system.current = system
        if data is None or await self.call(db.records):
            return
        for pid, stored in data.processes.items():
            record = new_record(stored.config.to_json(), stored.order,
                                stored.created_at, stored.updated_at)
            if await self.call(db.create, pid, record):
                meta = data.process_metadata.get(pid)
                if meta:
                    await self.call(db.set_metadata, pid, meta)
        if data.processes:
            log.info("cluster: seeded the shared store with %d processes from %s",
                     len(data.processes), self.cache.path)

    async def _leave(self, db: ClusterDB) -> None:
        for pid, lease in list(self.book.held.items()):
            try:
                await db.release(pid, self.id, lease.token)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                break
        self.book.held.clear()
        try:
            await db.unregister(self.id, self.token)
        except Exception:  # noqa: BLE001
            pass

    async def _system_writer(self, db: ClusterDB, system: SystemMetadataStore) -> None:
        """Writes the global metadata to Redis whenever this node's supervisor changed it."""
        while True:
            await system.changed.wait()
            system.changed = trio.Event()
            try:
                await self.call(db.set_system, copy.deepcopy(system.current))
            except RedisUnavailable as exc:
                log.warning("cluster: global metadata not written yet: %s", exc)
                system.changed.set()
                await trio.sleep(1.0)

    def _apply_system(self, remote: dict[str, Any]) -> None:
        """Bring another node's change of the global metadata into the supervisor."""
        system = self.system
        if system is None or system.changed.is_set() or remote == system.current:
            return
        for key in set(system.current) - set(remote):
            self.supervisor.set_system_metadata(key, None)
        for key, value in remote.items():
            if system.current.get(key) != value:
                self.supervisor.set_system_metadata(key, value)
        system.current = copy.deepcopy(remote)
        system.changed = trio.Event()  # what came from Redis is not written back

    # -- heartbeat and fencing ---------------------------------------------------------------

    async def _heartbeat_loop(self, db: ClusterDB) -> None:
        while True:
            sent = trio.current_time()
            leases = [(pid, lease.token) for pid, lease in self.book.held.items()
                      if not lease.stopping]
            self._beat += 1
            try:
                kept = await self.call(db.heartbeat, self.id, self.node_doc(), self.ttl_ms, leases)
            except RedisUnavailable as exc:
                log.warning("cluster: heartbeat failed: %s", exc)
            else:
                self._last_contact = sent
                for (pid, token), ok in zip(leases, kept, strict=True):
                    if ok:
                        self.book.renewed(pid, token, sent)
                    elif self.book.token(pid) == token:
                        log.warning("cluster: lease on %r lost to another node; stopping it", pid)
                        self.book.lost(pid)
                        self._applied.pop(pid, None)
                        self._spawn_stop(pid)
            await trio.sleep(max(0.0, sent + self.heartbeat_interval - trio.current_time()))

    async def _fence_loop(self) -> None:
        async with trio.open_nursery() as nursery:
            self._stops = nursery
            while True:
                now = trio.current_time()
                for pid in self.book.must_stop(now):
                    self.fenced += 1
                    log.warning("cluster: lease on %r not renewed for %.1f s; stopping its "
                                "FFmpeg (self-fencing)", pid, self.book.stop_after)
                    nursery.start_soon(self._fence_stop, pid)
                for pid in self.book.must_kill(now):
                    if pid not in self._killed:
                        self._killed.add(pid)
                        self._kill_now(pid)
                await trio.sleep(FENCE_INTERVAL)

    _stops: trio.Nursery | None = None

    def _spawn_stop(self, pid: str) -> None:
        if self._stops is not None:
            self._stops.start_soon(self._stop_local, pid)

    async def _fence_stop(self, pid: str) -> None:
        await self._stop_local(pid)
        self.book.lost(pid)
        self._killed.discard(pid)
        self._applied.pop(pid, None)

    def _kill_now(self, pid: str) -> None:
        """SIGKILL to the FFmpeg of ``pid`` (its group) when the graceful stop is too slow."""
        if self.pid_records is None:
            return
        for _path, rec in self.pid_records.records():
            if rec is not None and rec.process_id == pid and rec.server_pid == os.getpid():
                try:
                    os.killpg(rec.pid, signal.SIGKILL)
                    log.warning("cluster: %r still running close to its lease's end; SIGKILL", pid)
                except (ProcessLookupError, PermissionError):
                    pass

    async def _stop_local(self, pid: str) -> None:
        try:
            await self.supervisor.delete(pid)
        except (ProcessNotFound, RuntimeError):
            pass

    # -- reconcile ---------------------------------------------------------------------------

    async def _reconcile_loop(self, db: ClusterDB) -> None:
        while self.supervisor.nursery is None:
            await trio.sleep(0.05)
        while True:
            self._wake = trio.Event()
            try:
                await self.reconcile(db)
            except RedisUnavailable as exc:
                log.warning("cluster: reconcile skipped: %s", exc)
            except Exception:
                log.exception("cluster: reconcile failed")
            with trio.move_on_after(self.reconcile_interval):
                await self._wake.wait()

    async def _records(self, db: ClusterDB) -> dict[str, Record]:
        version, epoch = await self.call(db.version_and_epoch)
        if self._epoch is not None and epoch != self._epoch:
            # Redis lost its data: leases are gone although their holders still run them.
            # The holders take them back at their next renewal (fencing counters start from
            # their tokens); nobody acquires anything for one lease meanwhile.
            self._quarantine_until = trio.current_time() + self.settings.lease_seconds
            if self._records_cache:
                await self._reseed(db)
            version, epoch = await self.call(db.version_and_epoch)
        self._epoch = epoch
        if version != self._cache_version:
            records = await self.call(db.records)
            self._records_cache = records
            self._pins_cache = await self.call(db.pins)
            self._metadata_cache = await self.call(db.all_metadata)
            system = await self.call(db.system)
            self._apply_system(system)
            self._write_cache(records, self._metadata_cache, system)
            self._cache_version = version
        return self._records_cache

    def quarantined(self) -> bool:
        """True for one lease after Redis lost its data: no acquisition, release or move."""
        return trio.current_time() < self._quarantine_until

    async def _reseed(self, db: ClusterDB) -> None:
        """Write back the store as this node last saw it (``HSETNX``: idempotent when several
        nodes do it at once)."""
        log.warning("cluster: Redis lost the shared store (restarted without persistence?); "
                    "writing back the %d processes this node last saw", len(self._records_cache))
        for pid, record in self._records_cache.items():
            if await self.call(db.create, pid, record):
                meta = self._metadata_cache.get(pid)
                if meta:
                    await self.call(db.set_metadata, pid, meta)

    async def reconcile(self, db: ClusterDB) -> None:
        """One pass: placement, leases, the local supervisor (see the module docstring)."""
        records = await self._records(db)
        live, known = await self.call(db.nodes)
        wanted = await self.call(db.node_states)
        self.state = wanted.get(self.id, "online")
        for nid, doc in live.items():  # a drained node is not placed on, even before it beats
            doc["state"] = wanted.get(nid, doc.get("state", "online"))
        # a node that differs from the cluster (Core v17's check) is degraded: not placed on
        incompatible = compat.mark_incompatible(live)
        for nid in set(incompatible) - set(self.incompatible):
            log.warning("cluster: node %r is degraded and takes no processes: %s", nid,
                        incompatible[nid])
        self.incompatible = incompatible
        self.live_nodes, self.known_nodes = live, known
        healthy = {nid: int(doc.get("max_processes") or 0) for nid, doc in live.items()
                   if doc.get("state") == "online"}
        pids = sorted(records)
        self.holders = holders = await self.call(db.holders, pids)
        rooms = {nid: headroom(live[nid].get("resources") or {}) for nid in healthy}
        deps = process_dependencies(records)
        self.assignment = assignment = assign(
            records, healthy, pins=self._pins_cache,
            holders={pid: h[0] for pid, h in holders.items()},
            rooms=rooms, needs=process_needs(records), deps=deps)
        # a referenced process is added here before the processes reading its outputs
        roots = dependency_roots(pids, deps)
        pids.sort(key=lambda pid: (pid != roots[pid], pid))
        # what runs here without a lease (lost, deleted) stops
        for pid in self.supervisor.ids():
            if pid not in self.book.held:
                await self._stop_local(pid)
                self._applied.pop(pid, None)
        moved_one = False
        quiet = self.quarantined()
        for pid in pids:
            record = records[pid]
            target = assignment.get(pid)
            holder = holders.get(pid)
            if pid in self.book.held:
                if holder is not None and holder != (self.id, self.book.token(pid)):
                    continue  # the heartbeat notices the loss
                if self.book.held[pid].stopping:
                    continue
                if (target is not None and target != self.id and target in healthy
                        and not moved_one and not quiet):
                    moved_one = True
                    if await self.call(db.begin_move, pid, self.ttl_ms):
                        await self._hand_over(db, pid)
                        continue
                await self._apply(pid, record)
            elif holder is None and target == self.id and not quiet:
                sent = trio.current_time()
                token = await self.call(db.acquire, pid, self.id, self.ttl_ms)
                if not token:
                    continue
                self.book.acquired(pid, token, sent)
                if token > 1:
                    moving = await self.call(db.moving)
                    if moving == pid:
                        await self.call(db.end_move, pid)
                    else:
                        self.failovers += 1
                log.info("cluster: acquired %r (fencing token %d)", pid, token)
                await self._apply(pid, record)
        # leases on processes that were deleted
        for pid in list(self.book.held):
            if pid not in records and not quiet:
                await self._release(db, pid)

    async def _hand_over(self, db: ClusterDB, pid: str) -> None:
        log.info("cluster: handing %r over to %s", pid, self.assignment.get(pid))
        self.moves += 1
        await self._release(db, pid)

    async def _release(self, db: ClusterDB, pid: str) -> None:
        await self._stop_local(pid)
        lease = self.book.lost(pid)
        self._applied.pop(pid, None)
        if lease is not None:
            await self.call(db.release, pid, self.id, lease.token)

    async def _apply(self, pid: str, record: Record) -> None:
        """Make the local process match ``record`` (add, update, order, one-shot commands)."""
        sup = self.supervisor
        want = (int(record.get("rev", 0)), record.get("order", "stop"),
                int(record.get("reload", 0)), int(record.get("restart", 0)))
        applied = self._applied.get(pid)
        if applied == want:
            return
        try:
            cfg = ProcessConfig.from_json(record["config"])
        except ConfigError as exc:
            log.error("cluster: process %r has an invalid config in Redis: %s", pid, exc)
            return
        try:
            try:
                proc = sup.get(pid)
            except ProcessNotFound:
                proc = None
            if proc is None:
                idle_cfg = cfg.copy()
                idle_cfg.autostart = False
                proc = await sup.add(idle_cfg)
                proc.config = cfg
                proc.created_at = float(record.get("created_at", proc.created_at))
                proc.updated_at = float(record.get("updated_at", proc.updated_at))
                if want[1] == "start":
                    await sup.command(pid, "start")
                self._applied[pid] = want
                return
            if applied is None or applied[0] != want[0]:
                proc = await sup.update(pid, cfg)
                proc.created_at = float(record.get("created_at", proc.created_at))
                proc.updated_at = float(record.get("updated_at", proc.updated_at))
            if proc.order != want[1]:
                await sup.command(pid, want[1])
            if applied is not None and want[2] != applied[2]:
                await sup.command(pid, "reload")
            if applied is not None and want[3] != applied[3]:
                await sup.command(pid, "restart")
        except (ConfigError, ValueError, RuntimeError) as exc:
            log.error("cluster: cannot run %r here: %s", pid, exc)
            return
        self._applied[pid] = want

    def _write_cache(self, records: dict[str, Record], metadata: dict[str, Any],
                     system: dict[str, Any] | None = None) -> None:
        if self.cache is None:
            return
        data = StoreData()
        for pid, rec in records.items():
            try:
                cfg = ProcessConfig.from_json(rec["config"])
            except ConfigError:
                continue
            data.processes[pid] = StoredProcess(cfg, rec.get("order", "stop"),
                                                float(rec.get("created_at", 0)),
                                                float(rec.get("updated_at", 0)))
        data.process_metadata = {k: v for k, v in metadata.items() if k in data.processes}
        data.system_metadata = dict(system or {})
        try:
            self.cache.save(data)
        except StoreError as exc:
            log.warning("cluster: db.json cache not written: %s", exc)


def new_record(config: dict[str, Any], order: str, created_at: float | None = None,
               updated_at: float | None = None) -> dict[str, Any]:
    """A fresh process record for the shared store."""
    now = time.time()
    return {"config": config, "order": order,
            "created_at": int(created_at if created_at is not None else now),
            "updated_at": int(updated_at if updated_at is not None else now),
            "rev": 1, "reload": 0, "restart": 0}


def process_dependencies(records: dict[str, Record]) -> dict[str, str]:
    """The process whose output each process's inputs read first (``#<id>:output=<oid>``,
    placement affinity: see :mod:`.placement`)."""
    out: dict[str, str] = {}
    for pid, record in records.items():
        inputs = (record.get("config") or {}).get("input") or []
        if not isinstance(inputs, list):
            continue
        for io in inputs:
            address = io.get("address") if isinstance(io, dict) else None
            match = _REFERENCE_RE.match(address) if isinstance(address, str) else None
            if match is not None and match.group(1) != pid:
                out[pid] = match.group(1)
                break
    return out


def process_needs(records: dict[str, Record]) -> dict[str, Need]:
    """The ``limits`` (cpu_usage, memory_mbytes) of every process that has any."""
    out: dict[str, Need] = {}
    for pid, record in records.items():
        limits = (record.get("config") or {}).get("limits") or {}
        if not isinstance(limits, dict):
            continue
        try:
            cpu = float(limits.get("cpu_usage") or 0)
            memory = float(limits.get("memory_mbytes") or 0)
        except (TypeError, ValueError):
            continue
        if cpu > 0 or memory > 0:
            out[pid] = Need(cpu, memory)
    return out
