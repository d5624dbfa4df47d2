"""Leak checks: open file descriptors, live child processes and trio tasks of this process."""

from __future__ import annotations

import os


def open_fds() -> set[int]:
    """The file descriptors this process has open right now."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def child_pids() -> set[int]:
    """PIDs of this process's live (non-zombie) children."""
    me = os.getpid()
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            pids.add(int(entry))
    return pids


def task_count() -> int:
    """Number of live trio tasks in the current run (walks the task tree from the root)."""
    import trio

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return walk(trio.lowlevel.current_root_task())
