"""Metric sources reading live state (Core's ``monitor/*.go`` collectors, same metric names).

* :class:`UptimeSource` — ``uptime_uptime``
* :class:`CpuSource` — ``cpu_ncpu``, ``cpu_system``, ``cpu_user``, ``cpu_idle``, ``cpu_other``
  (percent of the whole machine since the previous reading, refreshed at most once a second)
* :class:`MemSource` — ``mem_total``, ``mem_free`` (available)
* :class:`NetSource` — ``net_rx``, ``net_tx`` {interface}
* :class:`DiskSource` — ``disk_total``, ``disk_usage`` {path}
* :class:`FilesystemSource` — ``filesystem_limit``, ``filesystem_usage``, ``filesystem_files``
  {name} of a directory tree (walked in a worker thread every 10 s, capped)
* :class:`RestreamSource` — ``restream_process``, ``restream_process_states``,
  ``restream_io``, ``restream_state``, ``ffmpeg_process`` from the Supervisor's processes
  and :class:`StateCounter` (a supervisor hook counting state changes)
* :class:`SessionSource` — ``session_*`` {collector} from the session registry

All ``collect`` calls are synchronous reads of memory (psutil reads ``/proc``); none waits on
anything or walks a directory.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psutil

from trio_core.observability.monitor import Description, Value
from trio_core.observability.sessions import SessionRegistry

if TYPE_CHECKING:
    from trio_core.engine.hooks import RunContext
    from trio_core.engine.supervisor import Supervisor

__all__ = [
    "CpuSource", "DiskSource", "FilesystemSource", "MemSource", "NetSource", "RestreamSource",
    "SessionSource", "StateCounter", "UptimeSource",
]

MAX_WALK_ENTRIES = 200_000
REFRESH_SECONDS = 10.0
PROCESS_STATES = ("failed", "finished", "finishing", "killed", "running", "starting")


class UptimeSource:
    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.desc = Description("uptime_uptime", "Current uptime in seconds")

    def describe(self) -> Sequence[Description]:
        return [self.desc]

    def collect(self) -> Iterable[Value]:
        return [Value.of(self.desc, int(time.time() - self.started_at))]


class CpuSource:
    def __init__(self) -> None:
        self.ncpu = Description("cpu_ncpu", "Number of logical CPUs in the system")
        self.system = Description("cpu_system", "Percentage of CPU used for the system")
        self.user = Description("cpu_user", "Percentage of CPU used for the user")
        self.idle = Description("cpu_idle", "Percentage of idle CPU")
        self.other = Description("cpu_other", "Percentage of CPU used for other subsystems")
        now = psutil.cpu_times()
        self._last = type(now)(*([0.0] * len(now)))  # first reading: the since-boot average
        self._last_at = -math.inf
        self._percent = (0.0, 0.0, 100.0, 0.0)

    def describe(self) -> Sequence[Description]:
        return [self.ncpu, self.system, self.user, self.idle, self.other]

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_at < 1.0:
            return
        cur = psutil.cpu_times()
        deltas = {k: max(0.0, getattr(cur, k) - getattr(self._last, k)) for k in cur._fields}
        total = sum(deltas.values())
        if total > 0:
            user = deltas.get("user", 0.0) + deltas.get("nice", 0.0)
            system = deltas.get("system", 0.0)
            idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
            other = max(0.0, total - user - system - idle)
            self._percent = tuple(100.0 * x / total for x in (system, user, idle, other))  # type: ignore[assignment]
        self._last, self._last_at = cur, now

    def collect(self) -> Iterable[Value]:
        self._refresh()
        system, user, idle, other = self._percent
        return [Value.of(self.ncpu, psutil.cpu_count() or 1), Value.of(self.system, system),
                Value.of(self.user, user), Value.of(self.idle, idle),
                Value.of(self.other, other)]


class MemSource:
    def __init__(self) -> None:
        self.total = Description("mem_total", "Total available memory in bytes")
        self.free = Description("mem_free", "Free memory in bytes")

    def describe(self) -> Sequence[Description]:
        return [self.total, self.free]

    def collect(self) -> Iterable[Value]:
        vm = psutil.virtual_memory()
        return [Value.of(self.total, vm.total), Value.of(self.free, vm.available)]


class NetSource:
    def __init__(self) -> None:
        self.rx = Description("net_rx", "Number of received bytes", ("interface",))
        self.tx = Description("net_tx", "Number of transmitted bytes", ("interface",))

    def describe(self) -> Sequence[Description]:
        return [self.rx, self.tx]

    def collect(self) -> Iterable[Value]:
        out = []
        for name, io in psutil.net_io_counters(pernic=True).items():
            out.append(Value.of(self.rx, io.bytes_recv, name))
            out.append(Value.of(self.tx, io.bytes_sent, name))
        return out


class DiskSource:
    def __init__(self, path: str) -> None:
        self.path = path
        self.total = Description("disk_total", "Total size of the disk in bytes", ("path",))
        self.usage = Description("disk_usage", "Number of used bytes on the disk", ("path",))

    def describe(self) -> Sequence[Description]:
        return [self.total, self.usage]

    def collect(self) -> Iterable[Value]:
        try:
            du = shutil.disk_usage(self.path)
        except OSError:
            return []
        return [Value.of(self.total, du.total, self.path), Value.of(self.usage, du.used, self.path)]


class FilesystemSource:
    """Size and file count of a directory tree as filesystem ``name`` (limit -1: unlimited).

    ``collect`` returns the figures of the last :meth:`refresh` (a blocking walk, capped at
    :data:`MAX_WALK_ENTRIES` entries, which the subsystem runs in a worker thread every
    :data:`REFRESH_SECONDS`), so a scrape never walks a directory tree.
    """

    def __init__(self, name: str, path: str, *, limit: int = -1) -> None:
        self.name = name
        self.path = path
        self.limit_bytes = limit
        self.limit = Description("filesystem_limit", "Total size of the filesystem in bytes, "
                                 "negative if unlimited", ("name",))
        self.usage = Description("filesystem_usage", "Number of used bytes on the filesystem",
                                 ("name",))
        self.files = Description("filesystem_files", "Number of files on the filesystem "
                                 "(excluding directories)", ("name",))
        self.size_bytes = 0
        self.file_count = 0

    def describe(self) -> Sequence[Description]:
        return [self.limit, self.usage, self.files]

    def refresh(self) -> None:
        """Walk the tree now (blocking file-system I/O: call it from a worker thread)."""
        size = files = seen = 0
        stack = [self.path]
        while stack and seen < MAX_WALK_ENTRIES:
            try:
                with os.scandir(stack.pop()) as it:
                    for entry in it:
                        seen += 1
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                files += 1
                                size += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            continue
            except OSError:
                continue
        self.size_bytes, self.file_count = size, files

    def collect(self) -> Iterable[Value]:
        return [Value.of(self.limit, self.limit_bytes, self.name),
                Value.of(self.usage, self.size_bytes, self.name),
                Value.of(self.files, self.file_count, self.name)]


class StateCounter:
    """A supervisor hook counting state changes per process and in total (Core's
    ``States``): ``starting`` per start attempt, ``running`` per FFmpeg run that was exec'd
    (from ``Process.runs``, noticed by :meth:`poll` every second and at each stop) and the
    state each run ended in (``finished``, ``failed``, ``killed``, ``finishing``)."""

    def __init__(self) -> None:
        self.per_process: dict[str, Counter[str]] = {}
        self.total: Counter[str] = Counter()
        self._runs: dict[str, int] = {}

    def _count(self, process_id: str, state: str, n: int = 1) -> None:
        self.per_process.setdefault(process_id, Counter())[state] += n
        self.total[state] += n

    def _runs_seen(self, process: Any) -> None:
        new = process.runs - self._runs.get(process.id, 0)
        if new > 0:
            self._count(process.id, "running", new)
        self._runs[process.id] = process.runs

    def poll(self, processes: Iterable[Any]) -> None:
        """Count the FFmpeg runs started since the last call."""
        for process in processes:
            self._runs_seen(process)

    async def on_start(self, ctx: RunContext) -> None:
        self._count(ctx.process.id, "starting")

    async def on_stop(self, ctx: RunContext, final: bool) -> None:
        process = ctx.process
        self._runs_seen(process)
        state = process.exec_state
        if state in PROCESS_STATES and state not in ("running", "starting"):
            self._count(process.id, state)

    def forget_missing(self, ids: Iterable[str]) -> None:
        """Drop the counters of deleted processes (keeps memory bounded)."""
        keep = set(ids)
        for pid in [p for p in self.per_process if p not in keep]:
            del self.per_process[pid]
        for pid in [p for p in self._runs if p not in keep]:
            del self._runs[pid]


class RestreamSource:
    def __init__(self, supervisor: Supervisor, counter: StateCounter) -> None:
        self.supervisor = supervisor
        self.counter = counter
        self.process = Description("restream_process", "Current process values by name",
                                   ("processid", "state", "order", "name"))
        self.states = Description("restream_process_states", "Current process state",
                                  ("processid", "state"))
        self.io = Description("restream_io", "Current process IO values by name",
                              ("processid", "type", "id", "address", "index", "stream",
                               "media", "name"))
        self.summary = Description("restream_state", "Summarized current process states",
                                   ("state",))
        self.ffmpeg = Description("ffmpeg_process",
                                  "Accumulated state changes of all ffmpeg processes",
                                  ("state",))

    def describe(self) -> Sequence[Description]:
        return [self.process, self.states, self.io, self.summary, self.ffmpeg]

    def processes(self) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for pid in self.supervisor.ids():
            try:
                process = self.supervisor.get(pid)
            except KeyError:
                continue
            out.append((process, process.state_json()))
        return out

    def collect(self) -> Iterable[Value]:
        out: list[Value] = []
        current: Counter[str] = Counter()
        processes = self.processes()
        self.counter.forget_missing(p.id for p, _ in processes)
        for process, state in processes:
            pid, exec_state, order = process.id, state["exec"], state["order"]
            current[exec_state] += 1
            prog = state["progress"]
            values = {
                "frame": prog["frame"], "fps": prog["fps"], "speed": prog["speed"],
                "q": prog["q"], "size": prog["size_kb"] * 1024, "time": prog["time"],
                "drop": prog["drop"], "dup": prog["dup"], "packet": prog["packet"],
                "bitrate": prog["bitrate_kbit"] * 1024, "cpu": state["cpu_usage"],
                "memory": state["memory_bytes"], "uptime": state["runtime_seconds"],
            }
            limits = process.config.limits
            if limits.cpu_usage or limits.memory_mbytes:
                values["cpu_limit"] = limits.cpu_usage
                values["memory_limit"] = limits.memory_mbytes * 1024 * 1024
            for name, value in values.items():
                out.append(Value.of(self.process, value or 0, pid, exec_state, order, name))
            counts = self.counter.per_process.get(pid, Counter())
            for s in PROCESS_STATES:
                out.append(Value.of(self.states, counts[s], pid, s))
            for kind, ios in (("input", prog["inputs"]), ("output", prog["outputs"])):
                for io in ios:
                    labels = (pid, kind, str(io["id"]), str(io["address"]), str(io["index"]),
                              str(io["stream"]), str(io["type"]))
                    fields = {"frame": io["frame"], "fps": io["fps"], "packet": io["packet"],
                              "pps": io["pps"], "size": io["size_kb"] * 1024,
                              "bitrate": io["bitrate_kbit"] * 1024}
                    if kind == "output":
                        fields["q"] = io.get("q", 0)
                    for name, value in fields.items():
                        out.append(Value.of(self.io, value or 0, *labels, name))
        for s in PROCESS_STATES:
            out.append(Value.of(self.summary, current[s], s))
            out.append(Value.of(self.ffmpeg, self.counter.total[s], s))
        return out


class SessionSource:
    def __init__(self, registry: SessionRegistry, before: Any = None) -> None:
        self.registry = registry
        self.before = before  # called before reading (e.g. WebRTC viewers sync)
        names = {
            "session_total": "Total sessions",
            "session_limit": "Max. number of concurrent sessions",
            "session_active": "Number of current sessions",
            "session_rxbytes": "Number of received bytes",
            "session_txbytes": "Number of transmitted bytes",
            "session_rxbitrate": "Current receiving bitrate in bit per second",
            "session_txbitrate": "Current transmitting bitrate in bit per second",
            "session_maxrxbitrate": "Max. allowed receiving bitrate in bit per second",
            "session_maxtxbitrate": "Max. allowed transmitting bitrate in bit per second",
        }
        self.descs = {k: Description(k, v, ("collector",)) for k, v in names.items()}

    def describe(self) -> Sequence[Description]:
        return list(self.descs.values())

    def collect(self) -> Iterable[Value]:
        if self.before is not None:
            self.before()
        d = self.descs
        out = []
        for name in self.registry.names():
            c = self.registry.collectors[name]
            out += [
                Value.of(d["session_total"], c.total_sessions, name),
                Value.of(d["session_limit"], c.max_sessions, name),
                Value.of(d["session_active"], c.sessions(), name),
                Value.of(d["session_rxbytes"], c.rx_bytes, name),
                Value.of(d["session_txbytes"], c.tx_bytes, name),
                Value.of(d["session_rxbitrate"], c.ingress_bitrate(), name),
                Value.of(d["session_txbitrate"], c.egress_bitrate(), name),
                Value.of(d["session_maxtxbitrate"], c.max_tx_bitrate, name),
                Value.of(d["session_maxrxbitrate"], 0, name),
            ]
        return out
