"""The Supervisor: owns every :class:`Process`, their persistence and their trio tasks.

Contract (docs/ARCHITECTURE.md "Supervisor / hook contract"):

* ``await nursery.start(supervisor.run)`` loads the Store (``StoreError`` before anything is
  started; the file is never written before a successful load), starts the processes whose order
  is ``start`` (at most ``max_processes`` when > 0) and serves until cancelled. Between the
  load and the first start, every hook with an ``on_load(processes)`` method is awaited with
  the loaded processes (a failing one is logged, the start goes on). ``delete`` awaits every
  hook's ``on_delete(process)`` (when it has one) after the process stopped and was forgotten,
  before it returns (a failing one is logged). On cancel every
  process is stopped gracefully (order unchanged, hooks get ``on_stop(final=True)``) and nothing
  outlives ``run``.
* ``add``/``update``/``delete``/``command`` need a running Supervisor (RuntimeError otherwise).
  Their stop/start part runs shielded (bounded by the FFmpeg stop grace, ~5 s with the default
  ``timings``, plus hook timeouts), so a cancelled caller never leaves a half-applied operation.
* Every change (add, update, delete, order change, metadata) is persisted at once via the Store.
* With ``pid_records`` every FFmpeg is recorded while it runs (:mod:`trio_core.engine.pid_records`), so
  that a server started after a crash can end leftovers (``serve`` does that before anything).
* ``restart`` is Core's: when the order is ``start`` and FFmpeg is running, FFmpeg is stopped
  gracefully (the call waits for its exit) and the **reconnect rules** decide what follows: with
  ``reconnect`` it runs again after ``reconnect_delay_seconds``, without it stays ``finished``
  (order still ``start``). Otherwise (order ``stop``, not running, waiting to reconnect) it is a
  no-op. ``reload`` stops and starts the process again at once when its order is ``start``
  (a no-op with order ``stop``). Placeholders and references are resolved again at every start.
* Inputs may reference another process's output as ``#<process id>:output=<output id>`` (Core's
  syntax); :meth:`Supervisor.resolve` replaces it by that output's resolved address. ``add`` and
  ``update`` refuse unknown references and self-references (ConfigError naming the input).
* db.json is rewritten whole on every change, so sizes are capped (0 = no cap): a process
  config bigger than ``max_config_bytes`` as JSON is refused by ``add``/``update``
  (ConfigError naming its largest field), a metadata value bigger than
  ``max_metadata_bytes`` by ``set_metadata``/``set_system_metadata`` (MetadataTooLarge).
* ``update`` keeps order, metadata and log history, resets ``created_at``/``updated_at`` (as
  datarhei), may re-key the process (new id), and starts it again if its order is ``start``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import trio

from trio_core.engine.hooks import Hook, HookAbort, RunContext
from trio_core.engine.pid_records import PidRecords
from trio_core.engine.placeholders import resolve_config
from trio_core.engine.process import DEFAULT_TIMINGS, EngineTimings, Process
from trio_core.engine.process_config import ConfigError, ProcessConfig
from trio_core.engine.store import Store, StoreData, StoredProcess

__all__ = [
    "DuplicateProcess",
    "Hook",
    "MetadataTooLarge",
    "HookAbort",
    "Process",
    "ProcessNotFound",
    "RunContext",
    "Supervisor",
    "TooManyProcesses",
]

log = logging.getLogger(__name__)

COMMANDS = ("start", "stop", "restart", "reload")
_REFERENCE_RE = re.compile(r"^#(.+):output=(.+)", re.DOTALL)


class ProcessNotFound(KeyError):
    """No process with this id."""

    def __str__(self) -> str:
        return f"unknown process id {self.args[0]!r}" if self.args else "unknown process"


class DuplicateProcess(ValueError):
    """A process with this id already exists."""

    def __init__(self, process_id: str) -> None:
        super().__init__(f"process {process_id!r} already exists")
        self.process_id = process_id


class TooManyProcesses(ValueError):
    """Starting would exceed ``max_processes``."""


class MetadataTooLarge(ValueError):
    """A metadata value is bigger than ``max_metadata_bytes``; the message names the key."""


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what it costs in db.json, give or take indentation)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Supervisor:
    """Runs and supervises FFmpeg processes; see the module docstring for the contract."""

    def __init__(self, *, ffmpeg: str, store: Store | None = None,
                 placeholders: Mapping[str, str] | None = None,
                 log_lines: int = 100, log_history: int = 3, max_processes: int = 0,
                 pid_records: PidRecords | None = None, max_config_bytes: int = 0,
                 max_metadata_bytes: int = 0, timings: EngineTimings | None = None) -> None:
        self.ffmpeg = ffmpeg
        self.timings = timings or DEFAULT_TIMINGS  # the engine's waits (tests shrink them)
        self.pid_records = pid_records
        self.max_config_bytes = max_config_bytes
        self.max_metadata_bytes = max_metadata_bytes
        self.store = store
        # read live, never copied: values come and go with the scopes that provide them
        # (:class:`~trio_core.engine.placeholders.Placeholders`)
        self.placeholders: Mapping[str, str] = placeholders if placeholders is not None else {}
        self.log_lines = log_lines
        self.log_history = log_history
        self.max_processes = max_processes
        self.hooks: list[Hook] = []
        self._procs: dict[str, Process] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._system_metadata: dict[str, Any] = {}
        self._nursery: trio.Nursery | None = None
        self._loaded = False

    @property
    def nursery(self) -> trio.Nursery | None:
        """The nursery processes run in while :meth:`run` runs (None otherwise)."""
        return self._nursery

    # -- lifecycle ---------------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        """Register a hook (applies from the next FFmpeg run of every process)."""
        self.hooks.append(hook)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, start ``order=start`` processes, serve until cancelled, then stop them all."""
        if self._nursery is not None:
            raise RuntimeError("this supervisor is already running")
        data = self.store.load() if self.store is not None else StoreData()
        self._procs = {}
        for pid, stored in data.processes.items():
            self._procs[pid] = self._new_process(stored.config, stored.order,
                                                 stored.created_at, stored.updated_at)
        self._metadata = {pid: dict(m) for pid, m in data.process_metadata.items()
                          if pid in self._procs}
        self._system_metadata = dict(data.system_metadata)
        self._loaded = True
        for hook in list(self.hooks):  # e.g. the cleanup rules, before any FFmpeg runs
            on_load = getattr(hook, "on_load", None)
            if on_load is not None:
                try:
                    await on_load(list(self._procs.values()))
                except Exception:
                    log.exception("%r.on_load failed", hook)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for proc in list(self._procs.values()):
                    if proc.order != "start":
                        continue
                    if self._limit_reached():
                        proc.log(f"Not started: max. number of running processes "
                                 f"({self.max_processes}) reached")
                        continue
                    await proc._start()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # -- queries -----------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return list(self._procs)

    def get(self, process_id: str) -> Process:
        try:
            return self._procs[process_id]
        except KeyError:
            raise ProcessNotFound(process_id) from None

    def resolve(self, cfg: ProcessConfig) -> ProcessConfig:
        """A copy of ``cfg`` with placeholders and ``#id:output=oid`` input references resolved.

        An unresolvable reference is left as it is (FFmpeg then fails on it and says so).
        """
        resolved = resolve_config(cfg, self.placeholders)
        for io in resolved.input:
            try:
                io.address = self._reference(cfg.id, io.address)
            except ConfigError:
                pass
        return resolved

    def _reference(self, own_id: str, address: str) -> str:
        """Core's ``resolveAddress`` (ConfigError with Core's wording when it fails)."""
        if not address.startswith("#"):
            return address
        match = _REFERENCE_RE.match(address)
        if match is None:
            raise ConfigError("", f"invalid format ({address})")
        target_id, output_id = match.group(1), match.group(2)
        if target_id == own_id:
            raise ConfigError("", f"self-reference not possible ({address})")
        target = self._procs.get(target_id)
        if target is None:
            raise ConfigError("", f"unknown process '{target_id}' ({address})")
        for out in resolve_config(target.config, self.placeholders).output:
            if out.id == output_id:
                return out.address
        raise ConfigError("", f"the process '{target_id}' has no outputs with the ID "
                              f"'{output_id}' ({address})")

    def _check_references(self, cfg: ProcessConfig) -> None:
        for i, io in enumerate(cfg.input):
            try:
                self._reference(cfg.id, io.address)
            except ConfigError as exc:
                raise ConfigError(f"input[{i}].address",
                                  f"reference error for '#{cfg.id}:{io.id}': {exc.message}") from None

    def running_count(self) -> int:
        return sum(1 for p in self._procs.values() if p.active)

    # -- mutations ---------------------------------------------------------------------------

    async def add(self, cfg: ProcessConfig) -> Process:
        """Add (and, with ``autostart``, start) a process. DuplicateProcess, TooManyProcesses."""
        self._require_running()
        if not isinstance(cfg, ProcessConfig):
            raise TypeError("cfg must be a ProcessConfig")
        if not cfg.id:
            raise ConfigError("id", "an empty ID is not allowed")
        if cfg.id in self._procs:
            raise DuplicateProcess(cfg.id)
        self._check_size(cfg)
        self._check_references(cfg)
        if cfg.autostart and self._limit_reached():
            raise TooManyProcesses(f"max. number of running processes ({self.max_processes}) reached")
        proc = self._new_process(cfg.copy(), "start" if cfg.autostart else "stop")
        self._procs[proc.id] = proc
        self._persist()
        if proc.order == "start":
            with trio.CancelScope(shield=True):
                async with proc.lock:
                    await proc._start()
        return proc

    async def update(self, process_id: str, cfg: ProcessConfig) -> Process:
        """Replace the config (maybe re-keying); restarts the process if its order is start."""
        self._require_running()
        proc = self.get(process_id)
        if not cfg.id:
            raise ConfigError("id", "an empty ID is not allowed")
        if cfg.id != process_id and cfg.id in self._procs:
            raise DuplicateProcess(cfg.id)
        self._check_size(cfg)
        self._check_references(cfg)
        with trio.CancelScope(shield=True):
            async with proc.lock:
                await proc._stop()
                new_cfg = cfg.copy()
                if new_cfg.id != process_id:
                    self._procs = {(new_cfg.id if k == process_id else k): v
                                   for k, v in self._procs.items()}
                    if process_id in self._metadata:
                        self._metadata[new_cfg.id] = self._metadata.pop(process_id)
                proc.id = new_cfg.id
                proc.config = new_cfg
                proc._argv = []
                proc._core_command = []
                now = time.time()
                proc.created_at = now
                proc.updated_at = now
                self._persist()
                if proc.order == "start":
                    await proc._start()
        return proc

    async def delete(self, process_id: str) -> None:
        """Stop the process (hooks get final=True), then forget it and its metadata."""
        self._require_running()
        proc = self.get(process_id)
        with trio.CancelScope(shield=True):
            async with proc.lock:
                await proc._stop()
                if self._procs.get(proc.id) is proc:
                    del self._procs[proc.id]
                    self._metadata.pop(proc.id, None)
                    self._persist()
                # e.g. the cleanup rules purge now, before a process of the same id can start
                for hook in list(self.hooks):
                    on_delete = getattr(hook, "on_delete", None)
                    if on_delete is not None:
                        try:
                            await on_delete(proc)
                        except Exception:
                            log.exception("%r.on_delete failed", hook)

    async def command(self, process_id: str, command: str) -> None:
        """``start`` | ``stop`` | ``restart`` | ``reload`` (ValueError for anything else)."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; known commands are: {', '.join(COMMANDS)}")
        self._require_running()
        proc = self.get(process_id)
        with trio.CancelScope(shield=True):
            async with proc.lock:
                if command == "start":
                    if not proc.active and self._limit_reached():
                        raise TooManyProcesses(
                            f"max. number of running processes ({self.max_processes}) reached")
                    if proc.order != "start":
                        proc.order = "start"
                        self._persist()
                    await proc._start()
                elif command == "stop":
                    if proc.order != "stop":
                        proc.order = "stop"
                        self._persist()
                    await proc._stop()
                elif command == "restart":
                    if proc.order == "start":
                        await proc._kill_run()
                elif proc.order == "start":  # reload
                    await proc._stop()
                    proc._argv = []
                    proc._core_command = []
                    await proc._start()

    # -- metadata ----------------------------------------------------------------------------

    def get_metadata(self, process_id: str, key: str | None) -> Any:
        """All metadata of a process (None if none) or one key (KeyError if unset)."""
        self.get(process_id)
        meta = self._metadata.get(process_id)
        if key is None:
            return copy.deepcopy(meta) if meta else None
        if not meta or key not in meta:
            raise KeyError(key)
        return copy.deepcopy(meta[key])

    def set_metadata(self, process_id: str, key: str, value: Any) -> None:
        """Set one key (``None`` deletes it); persisted at once."""
        self.get(process_id)
        if value is None:
            meta = self._metadata.get(process_id)
            if meta and key in meta:
                del meta[key]
                if not meta:
                    del self._metadata[process_id]
        else:
            self._check_metadata_size(key, value)
            self._metadata.setdefault(process_id, {})[key] = copy.deepcopy(value)
        self._persist()

    def get_system_metadata(self, key: str | None = None) -> Any:
        """Global (non-process) metadata: all (None if none) or one key (KeyError if unset)."""
        if key is None:
            return copy.deepcopy(self._system_metadata) or None
        return copy.deepcopy(self._system_metadata[key])

    def set_system_metadata(self, key: str, value: Any) -> None:
        if value is None:
            self._system_metadata.pop(key, None)
        else:
            self._check_metadata_size(key, value)
            self._system_metadata[key] = copy.deepcopy(value)
        self._persist()

    # -- helpers -----------------------------------------------------------------------------

    def _check_size(self, cfg: ProcessConfig) -> None:
        """ConfigError naming the largest field when ``cfg`` exceeds ``max_config_bytes``."""
        limit = self.max_config_bytes
        if limit <= 0:
            return
        doc = cfg.to_json()
        size = json_size(doc)
        if size > limit:
            field = max(doc, key=lambda name: json_size(doc[name]))
            raise ConfigError(field, f"the process config is {size} bytes as JSON, more than "
                                     f"db.max_process_config_bytes ({limit}); {field} is the "
                                     "largest field")

    def _check_metadata_size(self, key: str, value: Any) -> None:
        limit = self.max_metadata_bytes
        if limit > 0 and (size := json_size(value)) > limit:
            raise MetadataTooLarge(f"{key}: the value is {size} bytes as JSON, more than "
                                   f"db.max_metadata_value_bytes ({limit})")


    def _new_process(self, cfg: ProcessConfig, order: str, created_at: float | None = None,
                     updated_at: float | None = None) -> Process:
        return Process(self, cfg, order=order, created_at=created_at, updated_at=updated_at,
                       log_lines=self.log_lines, log_history=self.log_history,
                       timings=self.timings)

    def _require_running(self) -> None:
        if self._nursery is None:
            raise RuntimeError("the supervisor is not running")

    def _limit_reached(self) -> bool:
        return self.max_processes > 0 and self.running_count() >= self.max_processes

    def _persist(self) -> None:
        if self.store is None or not self._loaded:
            return
        data = StoreData(
            processes={pid: StoredProcess(p.config, p.order, p.created_at, p.updated_at)
                       for pid, p in self._procs.items()},
            system_metadata=self._system_metadata,
            process_metadata=self._metadata,
        )
        self.store.save(data)
