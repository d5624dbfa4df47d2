"""Records of the FFmpeg processes a server runs, so that the next start can end leftovers.

Every FFmpeg the engine starts is recorded in ``<db.dir>/trio-core-pids/<pid>.json`` as
``{"pid", "start_time", "boot_id", "process_id", "program", "server": {"pid", "start_time"}}``
and the record is removed when the process has been reaped. ``(pid, start_time, boot_id)``
identifies the process beyond its pid (pids are recycled; see :mod:`trio_core.ffmpeg.procfs`).

Normally there is nothing to end: children die with the server (parent-death signal, see
:mod:`trio_core.ffmpeg.child`). Records cover what that cannot: children of an older version, a kernel
without ``PR_SET_PDEATHSIG``, a server stopped by SIGSTOP and restarted elsewhere on the same db.

:meth:`PidRecords.end_leftovers` (the server calls it at start, before it starts anything)
decides per record with the pure :func:`judge`: a process that still runs with the recorded
identity, whose recording server is dead, is a leftover: its process group is sent SIGKILL and
the call waits (bounded) until it is gone. A recycled pid, a process from another boot, or a
record of a server that is still alive (a second server on the same db dir, or this very
process) is never signalled.
Unreadable records are dropped. All file I/O is small and synchronous (like the Store).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from trio_core.ffmpeg.procfs import ProcStat, boot_id, read_proc_stat

__all__ = ["DIRNAME", "Leftover", "PidRecords", "Record", "judge"]

log = logging.getLogger(__name__)

DIRNAME = "trio-core-pids"
END_TIMEOUT = 3.0


@dataclass(frozen=True)
class Record:
    pid: int
    start_time: int
    boot_id: str
    process_id: str
    program: str
    server_pid: int
    server_start_time: int

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time, "boot_id": self.boot_id,
                "process_id": self.process_id, "program": self.program,
                "server": {"pid": self.server_pid, "start_time": self.server_start_time}}

    @classmethod
    def from_json(cls, obj: Any) -> Record:
        """Raises ValueError for anything that is not a complete record."""
        try:
            server = obj["server"]
            rec = cls(int(obj["pid"]), int(obj["start_time"]), str(obj["boot_id"]),
                      str(obj["process_id"]), str(obj["program"]), int(server["pid"]),
                      int(server["start_time"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete pid record: {exc!r}") from None
        if rec.pid <= 0 or rec.server_pid <= 0:
            raise ValueError("pid record with a non-positive pid")
        return rec


@dataclass(frozen=True)
class Leftover:
    """A process that was ended (or could not be) at start."""

    record: Record
    ended: bool


def _same(stat: ProcStat | None, start_time: int) -> bool:
    return stat is not None and stat.start_time == start_time and not stat.dead


def judge(record: Record, *, current_boot: str, child: ProcStat | None,
          server: ProcStat | None, self_pid: int, self_start_time: int) -> str:
    """What to do with one record (pure). ``child``/``server``: the current /proc stat of the
    recorded pids (None if no such process); ``self_*``: the identity of the judging server.
    Returns:

    * ``"gone"``: the recorded process no longer runs (exited, pid recycled, other boot) —
      drop the record;
    * ``"ours"``: recorded by this very server process (another instance in it) — its own
      scopes end it; leave it alone;
    * ``"live-server"``: the server that recorded it is alive — leave both alone;
    * ``"end"``: a leftover — kill it, then drop the record.
    """
    if record.boot_id != current_boot or not _same(child, record.start_time):
        return "gone"
    if (record.server_pid, record.server_start_time) == (self_pid, self_start_time):
        return "ours"
    if _same(server, record.server_start_time):
        return "live-server"
    return "end"


class PidRecords:
    """The record directory of one db dir (created on first use)."""

    def __init__(self, db_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(db_dir) / DIRNAME
        self.boot_id = boot_id()
        self.server_pid = os.getpid()
        me = read_proc_stat(self.server_pid)
        self.server_start_time = me.start_time if me is not None else 0

    def _path(self, pid: int) -> Path:
        return self.dir / f"{pid}.json"

    def add(self, pid: int, start_time: int, process_id: str, program: str) -> None:
        """Record a started child (never raises: a failure is logged)."""
        rec = Record(pid, start_time, self.boot_id, process_id, program, self.server_pid,
                     self.server_start_time)
        path = self._path(pid)
        tmp = path.with_suffix(".tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(rec.to_json()))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write pid record %s: %s", path, exc)

    def remove(self, pid: int) -> None:
        """Forget a reaped child (never raises)."""
        try:
            self._path(pid).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove pid record %s: %s", self._path(pid), exc)

    def records(self) -> list[tuple[Path, Record | None]]:
        """Every record file with its parsed record (None when unreadable)."""
        try:
            paths = sorted(p for p in self.dir.iterdir() if p.suffix in (".json", ".tmp"))
        except FileNotFoundError:
            return []
        out: list[tuple[Path, Record | None]] = []
        for path in paths:
            rec: Record | None = None
            if path.suffix == ".json":
                try:
                    rec = Record.from_json(json.loads(path.read_text()))
                except (OSError, ValueError):
                    rec = None
            out.append((path, rec))
        return out

    async def end_leftovers(self, *, timeout: float = END_TIMEOUT) -> list[Leftover]:
        """End the recorded processes of a dead previous instance (see module docstring);
        returns what was ended. Waits up to ``timeout`` s for them to be gone. Cancellable
        (records of processes not yet confirmed gone are then kept)."""
        doomed: list[tuple[Path, Record]] = []
        for path, rec in self.records():
            if rec is None:
                _unlink(path)
                continue
            verdict = judge(rec, current_boot=self.boot_id, child=read_proc_stat(rec.pid),
                            server=read_proc_stat(rec.server_pid), self_pid=self.server_pid,
                            self_start_time=self.server_start_time)
            if verdict == "gone":
                _unlink(path)
            elif verdict == "ours":
                continue
            elif verdict == "live-server":
                log.warning("process %r (pid %d) belongs to a running server (pid %d) that uses "
                            "the same db dir; left alone", rec.process_id, rec.pid, rec.server_pid)
            else:
                _kill_group(rec)
                doomed.append((path, rec))
        result: list[Leftover] = []
        with trio.move_on_after(timeout):
            while doomed:
                still = []
                for path, rec in doomed:
                    if _same(read_proc_stat(rec.pid), rec.start_time):
                        still.append((path, rec))
                    else:
                        _unlink(path)
                        result.append(Leftover(rec, True))
                doomed = still
                if doomed:
                    await trio.sleep(0.02)
        for _path, rec in doomed:
            log.error("leftover %s (pid %d) of process %r did not end after SIGKILL",
                      rec.program, rec.pid, rec.process_id)
            result.append(Leftover(rec, False))
        for left in result:
            if left.ended:
                log.warning("ended leftover %s (pid %d) of process %r from a previous instance",
                            left.record.program, left.record.pid, left.record.process_id)
        return result


def _kill_group(rec: Record) -> None:
    """SIGKILL the leftover and its process group, if it is still the recorded process."""
    try:
        pidfd: int | None = os.pidfd_open(rec.pid)  # pins the identity checked below
    except ProcessLookupError:
        return
    except OSError:  # no pidfd support: fall back to the (tiny) check-then-kill race
        pidfd = None
    try:
        stat = read_proc_stat(rec.pid)
        if stat is None or not _same(stat, rec.start_time):
            return
        if stat.pgrp == rec.pid:
            os.killpg(rec.pid, signal.SIGKILL)
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(rec.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError) as exc:
        log.warning("cannot kill leftover pid %d: %s", rec.pid, exc)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
