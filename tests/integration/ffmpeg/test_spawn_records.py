"""The one spawn path hands every child to the pid records: processes, the API probe, the
WebRTC input probe and the skills probe each record their FFmpeg while it runs and forget it
once it is reaped (real FFmpeg, lavfi inputs, a recorder that remembers what it was told)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import trio

from trio_core.ffmpeg.child import spawn
from trio_core.ffmpeg.mediainfo import probe_inputs
from trio_core.ffmpeg.probe import run_probe
from trio_core.ffmpeg.procfs import read_proc_stat
from trio_core.ffmpeg.skills import probe_skills


@dataclass
class Recorder:
    """A :class:`trio_core.ffmpeg.child.PidRecorder` that checks what it is told."""

    live: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def add(self, pid: int, start_time: int, process_id: str, program: str) -> None:
        stat = read_proc_stat(pid)
        assert stat is not None and stat.start_time == start_time  # recorded while it runs
        assert pid not in self.live
        self.live[pid] = (start_time, process_id, program)
        self.seen.append((process_id, program))

    def remove(self, pid: int) -> None:
        start_time = self.live.pop(pid)[0]
        now = read_proc_stat(pid)
        assert now is None or now.start_time != start_time  # forgotten once reaped


@dataclass
class Input:
    address: str
    options: list[str]


@dataclass
class Config:
    options: list[str]
    input: list[Input]


LAVFI = Input("testsrc2=size=160x120:rate=10:duration=1", ["-f", "lavfi"])


async def test_spawn_records_the_child_until_it_is_reaped() -> None:
    rec = Recorder()
    child = await spawn(["sleep", "0.2"], record=rec, record_id="p1")
    assert rec.live == {child.pid: (child.start_time, "p1", "sleep")}
    assert await child.wait() == 0
    assert rec.live == {}
    await child.wait()  # a second wait does not remove twice
    assert rec.seen == [("p1", "sleep")]


async def test_api_probe_records_its_ffmpeg(ffmpeg: str) -> None:
    rec = Recorder()
    result = await run_probe(Config([], [LAVFI]), ffmpeg, record=rec, record_id="x (probe)")
    # lavfi's decoded frames: wrapped_avframe in newer FFmpeg (9 here), rawvideo in 5.1
    assert [s["codec"] for s in result["streams"]] in (["wrapped_avframe"], ["rawvideo"])
    assert [(s["width"], s["height"]) for s in result["streams"]] == [(160, 120)]
    assert rec.seen == [("x (probe)", os.path.basename(ffmpeg))] and rec.live == {}


async def test_cancelled_api_probe_forgets_its_ffmpeg(ffmpeg: str) -> None:
    rec = Recorder()
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with trio.move_on_after(1) as scope:
            await run_probe(Config([], [Input(address, [])]), ffmpeg, record=rec,
                            record_id="slow")
    assert scope.cancelled_caught
    assert rec.seen == [("slow", os.path.basename(ffmpeg))] and rec.live == {}


async def test_webrtc_input_probe_records_its_ffmpeg(ffmpeg: str) -> None:
    rec = Recorder()
    info = await probe_inputs(ffmpeg, [LAVFI], record=rec, record_id="cam (webrtc probe)")
    assert info is not None and info.video is not None and info.video.width == 160
    assert rec.seen == [("cam (webrtc probe)", os.path.basename(ffmpeg))] and rec.live == {}


async def test_skills_probe_records_every_ffmpeg_call(ffmpeg: str) -> None:
    rec = Recorder()
    skills = await probe_skills(ffmpeg, record=rec)
    assert skills["ffmpeg"]["version"]
    calls = [name for name, program in rec.seen if program == os.path.basename(ffmpeg)]
    assert len(calls) == 7 and rec.live == {}
    assert calls[0] == "skills -version"
