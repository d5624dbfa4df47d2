"""The process engine without HTTP: Supervisor + Process + hooks + Store, real FFmpeg.

Stopping must leave nothing behind: no child process, no file descriptor, no task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.leaks import child_pids, open_fds, task_count
from tests.helpers.timings import FAST_STOP
from trio_core.engine.hooks import HookAbort, RunContext
from trio_core.engine.process_config import ProcessConfig
from trio_core.engine.store import Store, StoreError
from trio_core.engine.supervisor import Supervisor


def lavfi(process_id: str, **extra: Any) -> ProcessConfig:
    obj: dict[str, Any] = {
        "id": process_id,
        "options": ["-loglevel", "level+info"],
        "input": [{"id": "v", "address": "testsrc=size=160x120:rate=20",
                   "options": ["-re", "-f", "lavfi"]},
                  {"id": "a", "address": "sine=sample_rate=8000", "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
    }
    obj.update(extra)
    return ProcessConfig.from_json(obj)


async def wait_until(predicate: Any, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


def frames(sup: Supervisor, process_id: str) -> int:
    return int(sup.get(process_id).state_json()["progress"].get("frame", 0))


def log_text(sup: Supervisor, process_id: str) -> str:
    report = sup.get(process_id).report_json()
    lines = [entry[1] for entry in report["log"]]
    for run in report["history"]:
        lines += [entry[1] for entry in run["log"]]
    return "\n".join(lines)


async def test_run_progress_stop_leaves_nothing(ffmpeg: str, tmp_path: Path) -> None:
    fds, tasks, children = open_fds(), task_count(), child_pids()
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg, store=Store(tmp_path))
        await nursery.start(sup.run)
        await sup.add(lavfi("p"))
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        await wait_until(lambda: frames(sup, "p") > 5)
        first = frames(sup, "p")
        await wait_until(lambda: frames(sup, "p") > first + 10)
        assert len(child_pids() - children) == 1
        await sup.command("p", "stop")
        assert sup.get("p").state_json()["exec"] == "finished"
        assert child_pids() == children
        nursery.cancel_scope.cancel()
    assert open_fds() == fds
    assert task_count() == tasks


async def test_a_stop_right_after_the_start_keeps_what_ffmpeg_printed(ffmpeg: str,
                                                                       tmp_path: Path) -> None:
    """A stop cancels the process scope, but FFmpeg's stderr is read to its end: the prelude
    FFmpeg prints while it stops and its last lines are in the run's report (a slowly
    starting FFmpeg 5.1 left an empty prelude)."""
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg, store=Store(tmp_path))
        await nursery.start(sup.run)
        for pid in ("p0", "p1", "p2"):
            await sup.add(lavfi(pid))
            proc = sup.get(pid)
            await wait_until(lambda p=proc: p.state_json()["exec"] == "running")
            await sup.command(pid, "stop")  # FFmpeg has barely started
            report = proc.report_json()
            assert any("Input #0" in line for line in report["prelude"]), report
            assert any("Output #0" in line for line in report["prelude"]), report
            # FFmpeg's closing statistics, printed after it got q
            assert any("muxing overhead" in line for _, line in report["log"]), report["log"]
        nursery.cancel_scope.cancel()


async def test_failing_input_fails_and_is_retried_with_the_reason_logged(
        ffmpeg: str, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg)
        await nursery.start(sup.run)
        cfg = lavfi("bad", reconnect=True, reconnect_delay_seconds=1,
                    input=[{"id": "in", "address": str(tmp_path / "missing.mp4")}])
        await sup.add(cfg)
        proc = sup.get("bad")
        # failed, then retried after the delay, and failed again
        await wait_until(lambda: proc.runs >= 2 and proc.state_json()["exec"] == "failed")
        assert "No such file or directory" in log_text(sup, "bad")
        assert proc.state_json()["order"] == "start"
        nursery.cancel_scope.cancel()


async def test_no_reconnect_means_failed_and_stays_failed(ffmpeg: str, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg)
        await nursery.start(sup.run)
        await sup.add(lavfi("bad", input=[{"id": "in", "address": str(tmp_path / "nope.mp4")}]))
        proc = sup.get("bad")
        await wait_until(lambda: proc.state_json()["exec"] == "failed")
        await trio.sleep(1.5)
        assert proc.runs == 1 and proc.state_json()["exec"] == "failed"
        nursery.cancel_scope.cancel()


async def test_stale_timeout_restarts_a_process_without_progress(ffmpeg: str,
                                                                 tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        # FFmpeg probing the silent input acts on neither q nor SIGTERM: a short stop grace
        sup = Supervisor(ffmpeg=ffmpeg, timings=FAST_STOP)
        await nursery.start(sup.run)
        # an SDP input whose RTP never comes: FFmpeg runs, no frame ever progresses
        sdp = tmp_path / "silent.sdp"
        sdp.write_text("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                       "t=0 0\r\nm=video 5 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
        cfg = lavfi("stale", stale_timeout_seconds=2, reconnect=True, reconnect_delay_seconds=0,
                    input=[{"id": "in", "address": str(sdp),
                            "options": ["-protocol_whitelist", "file,udp,rtp"]}])
        await sup.add(cfg)
        proc = sup.get("stale")
        await wait_until(lambda: proc.runs >= 2, timeout=20)  # restarted for being stale
        assert "Stopping because of stale timeout: no progress for 2 s" in log_text(sup, "stale")
        nursery.cancel_scope.cancel()


async def test_memory_limit_kills_after_waitfor(ffmpeg: str, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg)
        await nursery.start(sup.run)
        cfg = lavfi("hungry", limits={"memory_mbytes": 1, "waitfor_seconds": 1})
        await sup.add(cfg)
        proc = sup.get("hungry")
        await wait_until(lambda: proc.state_json()["exec"] == "killed", timeout=20)
        assert "limit" in log_text(sup, "hungry").lower()
        nursery.cancel_scope.cancel()


class RecordingHook:
    """Adds an output leg and a task in the process nursery; records its calls."""

    def __init__(self, out: Path, abort: bool = False) -> None:
        self.out = out
        self.abort = abort
        self.calls: list[tuple[str, int, bool | None]] = []
        self.task_cancelled = trio.Event()
        self.argv: list[str] = []

    async def on_start(self, ctx: RunContext) -> None:
        self.calls.append(("start", ctx.attempt, None))
        if self.abort:
            raise HookAbort("the hook says no")
        ctx.add_output(["-map", "0:v", "-frames:v", "10", "-f", "image2", "-y"],
                       str(self.out / "frame-%03d.png"))
        self.argv = ctx.argv
        if "task" not in ctx.state:
            ctx.state["task"] = True
            ctx.nursery.start_soon(self._owned_task)

    async def on_stop(self, ctx: RunContext, final: bool) -> None:
        self.calls.append(("stop", ctx.attempt, final))

    async def _owned_task(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.task_cancelled.set()


async def test_hooks_add_outputs_own_tasks_and_see_the_lifecycle(ffmpeg: str,
                                                                tmp_path: Path) -> None:
    hook = RecordingHook(tmp_path)
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg)
        sup.add_hook(hook)
        await nursery.start(sup.run)
        # the run ends by itself after 1.5 s and reconnects once we let it
        cfg = lavfi("h", reconnect=True, reconnect_delay_seconds=0,
                    input=[{"id": "v", "address": "testsrc=size=160x120:rate=20",
                            "options": ["-re", "-t", "1.5", "-f", "lavfi"]}])
        await sup.add(cfg)
        proc = sup.get("h")
        await wait_until(lambda: proc.runs >= 2)
        assert str(tmp_path / "frame-%03d.png") in hook.argv  # the added leg is in the command
        assert str(tmp_path / "frame-%03d.png") in proc.command()  # the argv that ran
        # state.command is Core's: the configured arguments only (no binary, no hook legs)
        assert proc.state_json()["command"] == [
            "-loglevel", "level+info", "-re", "-t", "1.5", "-f", "lavfi",
            "-i", "testsrc=size=160x120:rate=20", "-map", "0:v", "-f", "null", "-"]
        await wait_until(lambda: (tmp_path / "frame-010.png").exists())  # and FFmpeg ran it
        assert ("stop", 1, False) in hook.calls  # a reconnect follows: not final
        assert not hook.task_cancelled.is_set()  # the hook's task survives reconnects
        await sup.command("h", "stop")
        assert hook.calls[-1][0] == "stop" and hook.calls[-1][2] is True
        with trio.fail_after(2):
            await hook.task_cancelled.wait()  # stopping cancelled the process nursery
        nursery.cancel_scope.cancel()


async def test_hook_abort_fails_the_start_with_its_reason(ffmpeg: str, tmp_path: Path) -> None:
    hook = RecordingHook(tmp_path, abort=True)
    children = child_pids()
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg)
        sup.add_hook(hook)
        await nursery.start(sup.run)
        await sup.add(lavfi("x"))
        proc = sup.get("x")
        await wait_until(lambda: proc.state_json()["exec"] == "failed")
        assert "the hook says no" in proc.state_json()["last_logline"]
        assert "the hook says no" in log_text(sup, "x")
        assert child_pids() == children  # FFmpeg was never started
        nursery.cancel_scope.cancel()


async def test_persistence_brings_started_processes_back(ffmpeg: str, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg, store=Store(tmp_path))
        await nursery.start(sup.run)
        await sup.add(lavfi("on"))
        await sup.add(lavfi("off", autostart=False))
        sup.set_metadata("on", "k", {"v": 1})
        nursery.cancel_scope.cancel()
    db = json.loads((tmp_path / "db.json").read_text())
    assert set(db["process"]) == {"on", "off"}
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no leftovers
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg=ffmpeg, store=Store(tmp_path))
        await nursery.start(sup.run)
        await wait_until(lambda: sup.get("on").state_json()["exec"] == "running")
        assert sup.get("off").state_json()["exec"] == "finished"
        assert sup.get_metadata("on", "k") == {"v": 1}
        nursery.cancel_scope.cancel()


async def test_a_corrupt_db_is_refused_and_left_untouched(ffmpeg: str, tmp_path: Path) -> None:
    db = tmp_path / "db.json"
    db.write_text('{"version": 4, "process": {')
    before = db.read_bytes()
    sup = Supervisor(ffmpeg=ffmpeg, store=Store(tmp_path))
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="not valid JSON"),
                            allow_unwrapped=True, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert db.read_bytes() == before
