"""trio_core.engine.pid_records: leftovers are judged so a recycled pid or a live server's child is never signalled."""

from __future__ import annotations

import pytest

from trio_core.engine.pid_records import Record, judge
from trio_core.ffmpeg.procfs import ProcStat


def test_judge_never_signals_a_recycled_pid_or_a_live_servers_child() -> None:
    boot = "b1"
    rec = Record(100, 5000, boot, "cam", "ffmpeg", 50, 4000)

    def st(pid: int, start: int, state: str = "S") -> ProcStat:
        return ProcStat(pid, state, 1, pid, start)

    me = {"self_pid": 7, "self_start_time": 3000}
    assert judge(rec, current_boot=boot, child=st(100, 5000), server=None, **me) == "end"
    assert judge(rec, current_boot=boot, child=st(100, 5000), server=st(50, 3999),
                 **me) == "end"  # the server's pid was recycled: it is dead
    assert judge(rec, current_boot=boot, child=st(100, 5001), server=None, **me) == "gone"
    assert judge(rec, current_boot=boot, child=st(100, 5000, "Z"), server=None, **me) == "gone"
    assert judge(rec, current_boot=boot, child=None, server=None, **me) == "gone"
    assert judge(rec, current_boot="b2", child=st(100, 5000), server=None, **me) == "gone"
    assert judge(rec, current_boot=boot, child=st(100, 5000), server=st(50, 4000),
                 **me) == "live-server"
    assert judge(rec, current_boot=boot, child=st(100, 5000), server=st(50, 4000),
                 self_pid=50, self_start_time=4000) == "ours"
    # same pid as ours but another start time: a dead server whose pid we got (containers)
    assert judge(rec, current_boot=boot, child=st(100, 5000), server=None,
                 self_pid=50, self_start_time=4444) == "end"
    with pytest.raises(ValueError):
        Record.from_json({"pid": 1})
    assert Record.from_json(rec.to_json()) == rec
