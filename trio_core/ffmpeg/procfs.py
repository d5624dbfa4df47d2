"""Identity and run state of a process from ``/proc/<pid>/stat`` (Linux).

:func:`parse_proc_stat` is a pure parser of the text of ``/proc/<pid>/stat``;
:func:`read_proc_stat` reads it (a tiny synchronous procfs read that never blocks on disk) and
returns None when the process does not exist.

A pid alone does not identify a process: pids are recycled. ``(pid, start_time)`` does, within
one boot (``start_time`` is field 22, clock ticks after boot); :func:`boot_id` names the boot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProcStat", "ProcStatError", "boot_id", "parse_proc_stat", "read_proc_stat"]

#: states of a process that can act on a signal other than SIGKILL/SIGCONT: not these
STOPPED_STATES = frozenset("T")
DEAD_STATES = frozenset("ZXx")


class ProcStatError(ValueError):
    """``/proc/<pid>/stat`` text without the expected layout."""


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the engine uses."""

    pid: int
    state: str  # "R", "S", "D", "T" (stopped by a signal), "t" (traced), "Z" (zombie), …
    ppid: int
    pgrp: int
    start_time: int  # clock ticks after boot

    @property
    def stopped(self) -> bool:
        """Stopped by SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU: it cannot act until SIGCONT."""
        return self.state in STOPPED_STATES

    @property
    def dead(self) -> bool:
        """A zombie (exited, not yet reaped) or dying process."""
        return self.state in DEAD_STATES


def parse_proc_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``; the command name (field 2) may contain spaces and ``)``."""
    try:
        head, _, rest = text.rpartition(")")
        pid = int(head.split("(", 1)[0])
        fields = rest.split()
        # fields[0] is field 3 (state); ppid 4, pgrp 5, starttime 22 -> indexes 1, 2, 19
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError) as exc:
        raise ProcStatError(f"unexpected /proc/<pid>/stat content: {text[:80]!r}") from exc


def read_proc_stat(pid: int) -> ProcStat | None:
    """The stat of ``pid``, or None when there is no such process (or it is unreadable)."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_proc_stat(f.read())
    except (OSError, ProcStatError):
        return None


def boot_id() -> str:
    """The kernel's id of the current boot ("" when unknown)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
