"""trio_core.ffmpeg.procfs: /proc/<pid>/stat parsing with odd command names."""

from __future__ import annotations

import os

import pytest

from trio_core.ffmpeg.procfs import ProcStatError, parse_proc_stat, read_proc_stat


# ---------------------------------------------------------------------------------- pure parts
def test_parse_proc_stat_handles_odd_command_names() -> None:
    text = "4242 (ff) (mpeg) x) T 1 4242 4242 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 1 0 98765 0 0"
    st = parse_proc_stat(text)
    assert (st.pid, st.state, st.ppid, st.pgrp, st.start_time) == (4242, "T", 1, 4242, 98765)
    assert st.stopped and not st.dead
    with pytest.raises(ProcStatError):
        parse_proc_stat("4242 (ffmpeg) S 1")
    me = read_proc_stat(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.state in "RS"
