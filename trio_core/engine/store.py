"""Persistence of processes and metadata in ``<dir>/db.json`` (datarhei db version 4 layout).

Layout::

    {"version": 4,
     "process": {id: {"id", "reference", "config", "order", "created_at", "updated_at"}},
     "metadata": {"system": {...}, "process": {id: {key: value}}}}

``config`` is :meth:`ProcessConfig.to_json` (raw placeholders). Every :meth:`Store.save`
writes atomically: a temp file in the same directory, fsync, rename over ``db.json``, fsync
of the directory. A corrupt or unsupported ``db.json`` makes :meth:`Store.load` raise
:class:`StoreError` naming the file; the file is never touched by a failed load, and a
Supervisor does not save before a successful load.

The I/O is synchronous and small (one JSON file); it is called from the trio thread on purpose
so that writes are strictly ordered.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trio_core.engine.process_config import ConfigError, ProcessConfig

__all__ = ["DB_VERSION", "StoreData", "StoreError", "StoredProcess", "Store"]

DB_VERSION = 4


class StoreError(Exception):
    """The database file cannot be used (message names the file and the problem)."""


@dataclass
class StoredProcess:
    config: ProcessConfig
    order: str = "stop"
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class StoreData:
    processes: dict[str, StoredProcess] = field(default_factory=dict)
    system_metadata: dict[str, Any] = field(default_factory=dict)
    process_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


class Store:
    """``db.json`` inside ``directory`` (created on first save if missing)."""

    FILENAME = "db.json"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / self.FILENAME

    def load(self) -> StoreData:
        """Read the file; a missing file is an empty store. Raises StoreError otherwise."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return StoreData()
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: not valid JSON ({exc}); refusing to use or overwrite it") from exc
        if not isinstance(obj, dict):
            raise StoreError(f"{self.path}: expected a JSON object at the top level")
        version = obj.get("version")
        if version != DB_VERSION:
            raise StoreError(f"{self.path}: unsupported version of the DB file ({version!r}, expected {DB_VERSION})")
        procs = obj.get("process") or {}
        meta = obj.get("metadata") or {}
        if not isinstance(procs, dict) or not isinstance(meta, dict):
            raise StoreError(f"{self.path}: 'process' and 'metadata' must be objects")
        data = StoreData()
        for pid, entry in procs.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                raise StoreError(f"{self.path}: process {pid!r}: missing 'config' object")
            try:
                cfg = ProcessConfig.from_json(entry["config"], legacy_id=True)
            except ConfigError as exc:
                raise StoreError(f"{self.path}: process {pid!r}: invalid config: {exc}") from exc
            if cfg.id != pid:
                raise StoreError(f"{self.path}: process {pid!r}: config id is {cfg.id!r}")
            order = entry.get("order", "stop")
            if order not in ("start", "stop"):
                raise StoreError(f"{self.path}: process {pid!r}: invalid order {order!r}")
            try:
                created = float(entry.get("created_at", 0) or 0)
                updated = float(entry.get("updated_at", 0) or 0)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{self.path}: process {pid!r}: invalid timestamps") from exc
            data.processes[pid] = StoredProcess(cfg, order, created, updated)
        system = meta.get("system") or {}
        pmeta = meta.get("process") or {}
        if not isinstance(system, dict) or not isinstance(pmeta, dict) or not all(
            isinstance(v, dict) for v in pmeta.values()
        ):
            raise StoreError(f"{self.path}: malformed 'metadata'")
        data.system_metadata = dict(system)
        data.process_metadata = {k: dict(v) for k, v in pmeta.items()}
        return data

    @staticmethod
    def to_json(data: StoreData) -> dict[str, Any]:
        return {
            "version": DB_VERSION,
            "process": {
                pid: {
                    "id": pid,
                    "reference": p.config.reference,
                    "config": p.config.to_json(),
                    "order": p.order,
                    "created_at": int(p.created_at),
                    "updated_at": int(p.updated_at),
                }
                for pid, p in data.processes.items()
            },
            "metadata": {"system": data.system_metadata, "process": data.process_metadata},
        }

    def save(self, data: StoreData) -> None:
        """Write atomically (temp + fsync + rename + dir fsync). Raises StoreError on failure."""
        text = json.dumps(self.to_json(data), indent=2, sort_keys=False) + "\n"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".db.json.", suffix=".tmp", dir=self.dir)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
