"""Temporary directories that name their owning server, and removal of those left by dead ones.

:func:`make_owned_tempdir` creates ``<tmp>/<prefix><pid>-<start_time>-<random>``: the owner is
identified by pid *and* /proc start time (pids are recycled, see :mod:`trio_core.ffmpeg.procfs`).
:func:`remove_stale_tempdirs` (called at start) removes every such directory whose owner no
longer runs — e.g. after a crash or ``kill -9`` — and leaves those of live servers alone.
Directories without an owner in their name (made by older versions) are left alone too: nothing
tells whether their owner is alive.

Synchronous and small (a directory listing, a /proc read per candidate, ``rmtree``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

from trio_core.ffmpeg.procfs import read_proc_stat

__all__ = ["make_owned_tempdir", "owner_of", "remove_stale_tempdirs"]

log = logging.getLogger(__name__)


def _self_start_time() -> int:
    me = read_proc_stat(os.getpid())
    return me.start_time if me is not None else 0


def make_owned_tempdir(prefix: str, parent: str | None = None) -> str:
    """``tempfile.mkdtemp`` with this process's identity in the name (mode 0700)."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{_self_start_time()}-", dir=parent)


def owner_of(name: str, prefix: str) -> tuple[int, int] | None:
    """``(pid, start_time)`` encoded in a directory name made by :func:`make_owned_tempdir`."""
    m = re.fullmatch(re.escape(prefix) + r"(\d+)-(\d+)-[^/]+", name)
    if m is None:
        return None
    return int(m[1]), int(m[2])


def remove_stale_tempdirs(prefix: str, parent: str | None = None) -> list[str]:
    """Remove the owned temp directories (``prefix``) whose owner is dead; returns their paths."""
    parent = parent or tempfile.gettempdir()
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed: list[str] = []
    for name in names:
        if not name.startswith(prefix):
            continue
        owner = owner_of(name, prefix)
        if owner is None:
            continue
        pid, start_time = owner
        stat = read_proc_stat(pid)
        if stat is not None and stat.start_time == start_time and not stat.dead:
            continue  # its server is alive
        path = os.path.join(parent, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
            log.info("removed stale temp directory %s (its server, pid %d, is gone)", path, pid)
    return removed
