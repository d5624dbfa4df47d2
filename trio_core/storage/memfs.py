"""The in-memory file store behind ``/memfs`` (datarhei Core's ``mem`` filesystem, sized).

Sans-IO: plain synchronous methods over bytes, no tasks, no locks (a trio program calls them
from one thread, so every method is atomic with respect to the others).

* Files are immutable ``bytes`` objects. A write builds a new object and swaps it in at
  :meth:`Upload.commit`, so readers that already hold a file keep reading the old bytes
  (shared, never copied per reader) while the new version is being uploaded.
* Uploads are streamed: :meth:`MemFS.begin_write` returns an :class:`Upload` that takes the
  body chunk by chunk. Bytes of unfinished uploads count against the size limit, so the
  memory held by memfs (stored + in flight) never exceeds ``max_size`` when one is set.
* Size limit (``storage.memory.max_size_mbytes``; 0 = unlimited): a write that does not fit
  raises :class:`NoSpace` ("not enough space on device", as Core; "File is too big" when the
  file alone is larger than the limit), or, with ``purge`` (``storage.memory.purge``), the
  oldest files are removed until it fits.

Names are canonical paths (see :mod:`trio_core.storage.paths`); callers clean them first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from trio_core.util.glob import compile_glob

__all__ = ["FileInfo", "MemFS", "MemFile", "NoSpace", "Upload"]


class NoSpace(Exception):
    """The write does not fit; ``str(exc)`` is Core's message."""


@dataclass(frozen=True)
class FileInfo:
    """What a listing reports: ``name`` (``/a/b.ts``), ``size`` in bytes, ``mtime`` (unix s)."""

    name: str
    size: int
    mtime: float


class MemFile:
    """One stored file: ``data`` is shared by every reader (never modified)."""

    __slots__ = ("data", "mtime", "name")

    def __init__(self, name: str, data: bytes, mtime: float) -> None:
        self.name = name
        self.data = data
        self.mtime = mtime

    @property
    def size(self) -> int:
        return len(self.data)

    def info(self) -> FileInfo:
        return FileInfo(self.name, len(self.data), self.mtime)


class MemFS:
    """The store. ``max_size`` in bytes (0 = unlimited), ``purge`` evicts oldest files when
    full, ``clock`` gives unix time."""

    type = "mem"

    def __init__(self, *, max_size: int = 0, purge: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_size = max_size
        self.purge_when_full = purge
        self.clock = clock
        self._files: dict[str, MemFile] = {}
        self._used = 0
        self._reserved = 0  # bytes held by unfinished uploads

    # -- queries ------------------------------------------------------------------------------
    @property
    def used(self) -> int:
        """Bytes of stored files."""
        return self._used

    @property
    def reserved(self) -> int:
        """Bytes held by uploads not committed yet."""
        return self._reserved

    def __len__(self) -> int:
        return len(self._files)

    def open(self, path: str) -> MemFile | None:
        """The file at ``path`` (None if there is none)."""
        return self._files.get(path)

    def list(self, pattern: str = "") -> list[FileInfo]:
        """Every file (``pattern`` = a glob on the full name, empty = all), unsorted.
        Raises GlobError for a malformed pattern."""
        if not pattern:
            return [f.info() for f in self._files.values()]
        glob = compile_glob(pattern, "/")
        return [f.info() for f in self._files.values() if glob.match(f.name)]

    # -- changes ------------------------------------------------------------------------------
    def begin_write(self, path: str, expected_size: int | None = None) -> Upload:
        """Start writing ``path`` (created or replaced at :meth:`Upload.commit`).

        ``expected_size`` (the request's Content-Length, when known) lets a file that can never
        fit be refused at once with Core's "File is too big"."""
        if expected_size is not None and 0 < self.max_size < expected_size:
            raise NoSpace("File is too big")
        return Upload(self, path)

    def write(self, path: str, data: bytes) -> bool:
        """Store ``data`` at ``path`` at once; True when the file was created (False: replaced).
        Raises NoSpace."""
        upload = self.begin_write(path)
        try:
            upload.feed(data)
            return upload.commit()
        finally:
            upload.discard()

    def remove(self, path: str) -> int:
        """Delete ``path``; its size, or -1 when there was no such file (as Core)."""
        file = self._files.pop(path, None)
        if file is None:
            return -1
        self._used -= file.size
        return file.size

    def remove_all(self) -> int:
        """Delete every file; the bytes freed."""
        freed = self._used
        self._files.clear()
        self._used = 0
        return freed

    def purge(self, size: int, keep: str | None = None) -> int:
        """Remove the oldest files (not ``keep``) until at least ``size`` bytes are freed;
        returns the bytes freed."""
        freed = 0
        for file in sorted(self._files.values(), key=lambda f: f.mtime):
            if freed >= size:
                break
            if file.name == keep:
                continue
            freed += max(self.remove(file.name), 0)
        return freed

    # -- used by Upload -----------------------------------------------------------------------
    def _make_room(self, path: str, extra: int, total: int) -> None:
        """Account ``extra`` more in-flight bytes for an upload of ``total`` bytes to ``path``
        (NoSpace when they do not fit and cannot be purged)."""
        if self.max_size <= 0:
            self._reserved += extra
            return
        if total > self.max_size:
            raise NoSpace("File is too big")
        existing = self._files.get(path)
        replaced = existing.size if existing is not None else 0
        overflow = self._used - replaced + self._reserved + extra - self.max_size
        if overflow > 0:
            if not self.purge_when_full or self.purge(overflow, keep=path) < overflow:
                raise NoSpace("not enough space on device")
        self._reserved += extra

    def _store(self, path: str, data: bytes) -> bool:
        existing = self._files.get(path)
        if existing is not None:
            self._used -= existing.size
        self._files[path] = MemFile(path, data, self.clock())
        self._used += len(data)
        return existing is None


class Upload:
    """One write in progress: ``feed`` chunks, then ``commit`` (or ``discard``).

    ``feed`` raises NoSpace when the limit is hit (the upload is then discarded).
    ``discard`` is idempotent and safe after ``commit``; use it in a ``finally``.
    """

    def __init__(self, fs: MemFS, path: str) -> None:
        self.fs = fs
        self.path = path
        self._chunks: list[bytes] = []
        self._size = 0
        self._open = True

    @property
    def size(self) -> int:
        return self._size

    def feed(self, chunk: bytes) -> None:
        if not self._open:
            raise RuntimeError("upload already finished")
        if not chunk:
            return
        try:
            self.fs._make_room(self.path, len(chunk), self._size + len(chunk))
        except NoSpace:
            self.discard()
            raise
        self._chunks.append(bytes(chunk))
        self._size += len(chunk)

    def commit(self) -> bool:
        """Store the file; True when it was created, False when it replaced one."""
        if not self._open:
            raise RuntimeError("upload already finished")
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._release()
        return self.fs._store(self.path, data)

    def discard(self) -> None:
        if self._open:
            self._release()

    def _release(self) -> None:
        self._open = False
        self.fs._reserved -= self._size
        self._chunks = []
