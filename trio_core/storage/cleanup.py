"""Output cleanup rules (datarhei Core ``restream/fs``): bounded HLS windows, nothing left behind.

A process output may carry ``cleanup`` rules ``{pattern, max_files, max_file_age_seconds,
purge_on_delete}``. The pattern's prefix picks the storage (``memfs:``/``mem:`` -> memfs,
``diskfs:``/``disk:`` -> disk; other prefixes and patterns without one are ignored, as in
Core), the rest is a glob on file names (``/name_**.ts``). Placeholders ``{processid}``,
``{reference}``, ``{outputid}`` in patterns are resolved first.

As in Core the rules of a process are in force for as long as the process *exists* (running
or not): every second, for each rule, files beyond the newest ``max_files`` and files older
than ``max_file_age_seconds`` are removed. ``purge_on_delete`` removes every matching file when
the rules are withdrawn: the process is deleted (at once, by the supervisor hook
``on_delete``, before the delete returns), its config is updated (the old rules go,
purging, before the new FFmpeg starts — whether or not the rules changed, as Core), and at
server shutdown. A killed server never got to that last purge, so the rules also apply at
start (:meth:`Cleaner.on_load`, before any stored process runs): the ``purge_on_delete`` files
of every stored process are removed (they belong to a run that is gone) and ``max_files`` /
``max_file_age_seconds`` trim the rest.

The decisions are pure functions (:func:`rules_of`, :func:`expired`, :func:`purge_targets`);
:class:`Cleaner` is the trio shell. ``Cleaner.run`` lives in the storage subsystem's nursery
(started before the supervisor, cancelled after it has stopped every process) and, when
cancelled, purges the ``purge_on_delete`` files of every process (shielded, bounded by
:data:`SHUTDOWN_PURGE_TIMEOUT`). ``Cleaner`` is also a supervisor hook: ``on_start`` applies a
changed config's rules at once, before FFmpeg runs.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from trio_core.engine.placeholders import resolve_config
from trio_core.engine.process_config import ProcessConfig
from trio_core.storage.memfs import FileInfo
from trio_core.util.glob import GlobError, compile_glob

__all__ = ["Cleaner", "Rule", "expired", "purge_targets", "rules_of"]

log = logging.getLogger(__name__)

SHUTDOWN_PURGE_TIMEOUT = 10.0
_PREFIX = re.compile(r"^([a-z]+):")
_ALIASES = {"memfs": "mem", "diskfs": "disk"}


@dataclass(frozen=True)
class Rule:
    """One cleanup rule: ``storage`` ("mem"/"disk"), ``pattern`` (glob without the prefix)."""

    storage: str
    pattern: str
    max_files: int = 0
    max_file_age_seconds: int = 0
    purge_on_delete: bool = False


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def rules_of(resolved: ProcessConfig, storages: Sequence[str] = ("mem", "disk")) -> tuple[Rule, ...]:
    """The rules of a placeholder-resolved config, for the storages that exist."""
    rules: list[Rule] = []
    for output in resolved.output:
        for raw in output.cleanup:
            pattern = str(raw.get("pattern", ""))
            match = _PREFIX.match(pattern)
            if match is None:
                continue
            name = _ALIASES.get(match.group(1), match.group(1))
            if name not in storages:
                continue
            glob = pattern[match.end():]
            try:
                compile_glob(glob, "/")
            except GlobError:
                continue
            rules.append(Rule(name, glob, _int(raw.get("max_files")),
                              _int(raw.get("max_file_age_seconds")),
                              bool(raw.get("purge_on_delete", False))))
    return tuple(rules)


def expired(rule: Rule, files: Sequence[FileInfo], now: float) -> list[str]:
    """Names ``rule`` removes now from ``files`` (which match its pattern): the oldest beyond
    ``max_files``, and every file older than ``max_file_age_seconds``."""
    ordered = sorted(files, key=lambda f: f.mtime)
    doomed: list[str] = []
    if rule.max_files > 0 and len(ordered) > rule.max_files:
        doomed.extend(f.name for f in ordered[:len(ordered) - rule.max_files])
    if rule.max_file_age_seconds > 0:
        best_before = now - rule.max_file_age_seconds
        doomed.extend(f.name for f in ordered if f.mtime < best_before and f.name not in doomed)
    return doomed


def purge_targets(rule: Rule, files: Sequence[FileInfo]) -> list[str]:
    """Names removed when ``rule`` is withdrawn (longest first, as Core); none without
    ``purge_on_delete``."""
    if not rule.purge_on_delete:
        return []
    return [f.name for f in sorted(files, key=lambda f: len(f.name), reverse=True)]


class Storage(Protocol):
    """What the cleaner needs of a storage (MemFS: sync methods; DiskFS: async)."""

    def list(self, pattern: str = "") -> Any: ...

    def remove(self, path: str) -> Any: ...


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass
class _Entry:
    process: Any
    config: ProcessConfig
    placeholders: dict[str, str]
    rules: tuple[Rule, ...]


class Cleaner:
    """Enforces the rules of every process of ``supervisor`` on ``storages`` ({"mem": …})."""

    def __init__(self, storages: Mapping[str, Storage], supervisor: Any,
                 interval: float = 1.0, clock: Any = None) -> None:
        self.storages = dict(storages)
        self.supervisor = supervisor
        self.interval = interval
        self.clock = clock or time.time
        self._entries: dict[int, _Entry] = {}
        # one change at a time: a start waits for a purge in progress (no new file is hit)
        self._lock = trio.Lock()
        self.removed = 0  # files removed so far (for tests/metrics)

    # -- hook ---------------------------------------------------------------------------------
    async def on_start(self, ctx: Any) -> None:
        try:
            await self.sync_process(ctx.process)
        except Exception as exc:  # a cleanup problem must not keep the process from starting
            ctx.process.log(f"cleanup rules: {exc!r}")

    async def on_stop(self, ctx: Any, final: bool) -> None:
        return None

    async def on_delete(self, process: Any) -> None:
        """The process was deleted: its rules go now, purging (as Core's delete does before it
        returns), not at the next sweep — a new process of the same id may start at once and
        the old rules would purge its files."""
        async with self._lock:
            entry = self._entries.pop(id(process), None)
            rules = set(entry.rules) if entry is not None else set()
            if entry is None or entry.config is not process.config:
                try:  # a process deleted before the sweep saw it (or its last update)
                    rules.update(self._rules(process))
                except Exception as exc:
                    log.warning("cleanup rules of deleted %s: %r", process.id, exc)
            await self._purge(sorted(rules, key=lambda r: (r.storage, r.pattern)))

    async def on_load(self, processes: Sequence[Any]) -> None:
        """The server starts (the supervisor loaded ``processes``, none runs yet): what a
        killed previous run left goes now — its shutdown purge never happened."""
        for process in processes:
            try:
                await self.sync_process(process)
            except Exception as exc:
                process.log(f"cleanup rules: {exc!r}")
        async with self._lock:
            for entry in list(self._entries.values()):
                try:
                    await self._purge(entry.rules)
                except Exception:  # a storage problem must not keep the processes from starting
                    log.exception("cleanup at start failed for %s", entry.process.id)
            await self._sweep(self.clock())

    # -- registry -----------------------------------------------------------------------------
    def _rules(self, process: Any) -> tuple[Rule, ...]:
        resolved = resolve_config(process.config, self.supervisor.placeholders)
        return rules_of(resolved, tuple(self.storages))

    async def sync_process(self, process: Any) -> None:
        """Bring the rules of one existing process up to date (purging replaced rules)."""
        key = id(process)
        entry = self._entries.get(key)
        placeholders = dict(self.supervisor.placeholders)
        if (entry is not None and entry.config is process.config
                and entry.placeholders == placeholders):
            return
        async with self._lock:
            entry = self._entries.get(key)
            if (entry is not None and entry.config is process.config
                    and entry.placeholders == placeholders):
                return
            rules = self._rules(process)
            if entry is not None and entry.config is not process.config:
                # the config was updated: Core withdraws the old rules (purging) first
                del self._entries[key]
                await self._purge(entry.rules)
            self._entries[key] = _Entry(process, process.config, placeholders, rules)

    async def sync(self) -> None:
        """Bring every process's rules up to date; withdraw those of deleted processes."""
        current: dict[int, Any] = {}
        for pid in self.supervisor.ids():
            try:
                process = self.supervisor.get(pid)
            except KeyError:
                continue
            current[id(process)] = process
        async with self._lock:
            for key in [k for k in self._entries if k not in current]:
                entry = self._entries.pop(key)
                await self._purge(entry.rules)
        for process in current.values():
            await self.sync_process(process)

    # -- work ---------------------------------------------------------------------------------
    async def _remove(self, storage: str, names: Sequence[str]) -> None:
        fs = self.storages[storage]
        for name in names:
            if await _maybe_await(fs.remove(name)) >= 0:
                self.removed += 1

    async def _purge(self, rules: Sequence[Rule]) -> None:
        for rule in rules:
            if rule.purge_on_delete:
                files = await _maybe_await(self.storages[rule.storage].list(rule.pattern))
                await self._remove(rule.storage, purge_targets(rule, files))

    async def sweep(self) -> None:
        """Apply ``max_files``/``max_file_age_seconds`` of every rule once."""
        now = self.clock()
        async with self._lock:
            await self._sweep(now)

    async def _sweep(self, now: float) -> None:
        for entry in list(self._entries.values()):
            for rule in entry.rules:
                if rule.max_files <= 0 and rule.max_file_age_seconds <= 0:
                    continue
                files = await _maybe_await(self.storages[rule.storage].list(rule.pattern))
                await self._remove(rule.storage, expired(rule, files, now))

    async def purge_all(self) -> None:
        """Withdraw every process's rules (purging ``purge_on_delete`` files): shutdown."""
        async with self._lock:
            entries, self._entries = list(self._entries.values()), {}
            for entry in entries:
                await self._purge(entry.rules)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every ``interval`` seconds: sync with the supervisor, sweep. On cancel: purge."""
        task_status.started()
        try:
            while True:
                try:
                    await self.sync()
                    await self.sweep()
                except Exception:  # a storage hiccup or a bad rule must not end the loop
                    log.exception("cleanup sweep failed (retrying in %s s)", self.interval)
                await trio.sleep(self.interval)
        finally:
            with trio.move_on_after(SHUTDOWN_PURGE_TIMEOUT) as scope:
                scope.shield = True
                await self.purge_all()
