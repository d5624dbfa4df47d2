"""The disk storage (``storage.disk.dir``, datarhei Core's ``disk`` filesystem).

A thin trio shell over the directory: every blocking call runs in ``trio.to_thread`` (so a
slow disk delays only the request that touches it) and is cancellable while waiting for the
thread. Names are canonical paths (:mod:`trio_core.storage.paths`) relative to the root;
:meth:`DiskFS.resolve` refuses anything whose real path (symlinks followed) leaves the root,
so neither ``..`` nor a symlink can reach other files.

Writes (``PUT /api/v3/fs/disk/...``) go to a temporary file next to the target that replaces
it atomically when the body is complete; an aborted write leaves nothing behind.
"""

from __future__ import annotations

import os
import stat as stat_module
import tempfile
from collections.abc import AsyncIterable

import trio

from trio_core.storage.memfs import FileInfo
from trio_core.util.glob import compile_glob

__all__ = ["DiskFS"]


class DiskFS:
    """Files under ``root`` (created if missing)."""

    type = "disk"

    def __init__(self, root: str) -> None:
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)

    def resolve(self, path: str) -> str | None:
        """The absolute file system path of ``path`` when it stays inside the root, else None."""
        real = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if real == self.root or real.startswith(self.root + os.sep):
            return real
        return None

    async def stat(self, path: str) -> tuple[str, os.stat_result] | None:
        """``(real path, stat)`` of ``path`` (file or directory), None when missing/outside."""
        real = self.resolve(path)
        if real is None:
            return None
        try:
            return real, await trio.to_thread.run_sync(os.stat, real)
        except OSError:
            return None

    async def open_file(self, path: str, default_file: str = "") -> tuple[str, os.stat_result] | None:
        """The regular file at ``path`` (a directory's ``default_file`` when given), or None."""
        found = await self.stat(path)
        if found is not None and stat_module.S_ISDIR(found[1].st_mode) and default_file:
            found = await self.stat(path.rstrip("/") + "/" + default_file)
        if found is None or not stat_module.S_ISREG(found[1].st_mode):
            return None
        return found

    def _list(self, pattern: str) -> list[FileInfo]:
        glob = compile_glob(pattern, "/") if pattern else None
        files: list[FileInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            # never follow symlinked directories out of the root
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for filename in filenames:
                full = os.path.join(dirpath, filename)
                name = "/" + os.path.relpath(full, self.root).replace(os.sep, "/")
                if glob is not None and not glob.match(name):
                    continue
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                if stat_module.S_ISREG(st.st_mode):
                    files.append(FileInfo(name, st.st_size, st.st_mtime))
        return files

    async def list(self, pattern: str = "") -> list[FileInfo]:
        """Every regular file (``pattern`` = glob on the full name ``/a/b``), unsorted."""
        return await trio.to_thread.run_sync(self._list, pattern)

    def _remove(self, path: str) -> int:
        real = self.resolve(path)
        if real is None:
            return -1
        try:
            st = os.stat(real)
            if not stat_module.S_ISREG(st.st_mode):
                return -1
            os.remove(real)
        except OSError:
            return -1
        return st.st_size

    async def remove(self, path: str) -> int:
        """Delete the file ``path``; its size, or -1 when there was none (as Core)."""
        return await trio.to_thread.run_sync(self._remove, path)

    async def write(self, path: str, chunks: AsyncIterable[bytes]) -> bool:
        """Write ``path`` from ``chunks``; True when created, False when replaced.

        Raises OSError (e.g. the parent is a file, disk full) and ValueError when the path
        leaves the root or names the root itself.
        """
        real = self.resolve(path)
        if real is None or real == self.root:
            raise ValueError(f"invalid path {path}")
        parent = os.path.dirname(real)
        await trio.to_thread.run_sync(lambda: os.makedirs(parent, exist_ok=True))
        if self.resolve(os.path.relpath(parent, self.root)) is None:
            raise ValueError(f"invalid path {path}")
        fd, tmp = await trio.to_thread.run_sync(
            lambda: tempfile.mkstemp(prefix=".upload-", dir=parent))
        done = False
        try:
            async with await trio.open_file(fd, "wb", closefd=True) as f:
                async for chunk in chunks:
                    await f.write(chunk)
            created = not await trio.to_thread.run_sync(os.path.exists, real)
            await trio.to_thread.run_sync(os.replace, tmp, real)
            done = True
            return created
        finally:
            if not done:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(lambda: os.path.exists(tmp) and os.remove(tmp))
