"""trio_core.engine.limits: /proc parsing, CPU % from successive readings, and limits that must be
exceeded continuously for ``waitfor`` seconds."""

from __future__ import annotations

import os

import pytest

from trio_core.engine.limits import (
    CpuMeter,
    LimitWatch,
    ProcParseError,
    parse_stat,
    parse_status_rss,
    sample,
)

STAT = "4242 (ff mpeg) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0"


def test_proc_parsing() -> None:
    assert parse_stat(STAT) == 300  # utime + stime, command names with spaces and ")"
    assert parse_stat(STAT.replace("(ff mpeg)", "(a) b)")) == 300
    with pytest.raises(ProcParseError):
        parse_stat("garbage")
    assert parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\n") == 2048 * 1024
    assert parse_status_rss("Name:\tx\n") == 0
    me = sample(os.getpid())
    assert me is not None and me.rss_bytes > 0 and me.cpu_seconds >= 0
    assert sample(-1) is None


def test_cpu_meter_is_percent_of_all_cores() -> None:
    meter = CpuMeter(ncpu=2)
    assert meter.update(10.0, 5.0) is None
    assert meter.update(12.0, 6.0) == pytest.approx(25.0)  # 1 s of CPU in 2 s on 2 cores
    assert meter.update(12.0, 7.0) is None  # no time passed


def test_limits_must_hold_for_waitfor_seconds() -> None:
    watch = LimitWatch(cpu_percent=50, memory_bytes=1000, waitfor=3)
    assert watch.enabled and not LimitWatch(0, 0, 3).enabled
    assert watch.update(0, 80, 10) is None
    assert watch.update(2, 80, 10) is None
    assert watch.update(3, 80, 10) == "cpu 80.0% > 50%"
    assert watch.update(4, 10, 10) is None  # back under: the clock restarts
    assert watch.update(5, 10, 2000) is None
    assert watch.update(8, 10, 2000) == "memory 2000 bytes > 1000 bytes"
