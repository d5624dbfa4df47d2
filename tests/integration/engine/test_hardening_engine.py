"""Process-engine hardening (issue 12): FFmpeg never outlives the server, leftovers of a crashed
instance are ended at start, a stopped (SIGSTOP) FFmpeg is replaced at once, signal deaths are
logged, stale WebRTC temp folders are removed, a deleted demo stays deleted.

Real servers (``python -m trio_core`` subprocesses killed with SIGKILL, or ``serve`` in-process),
real FFmpeg, real HTTP; processes are found through /proc by a marker in their command line.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.api import Api, make_config, running_server, tiny_process, wait_for
from tests.helpers.server_process import server_env, server_subprocess
from tests.helpers.whep import webrtc_process
from trio_core.engine.pid_records import DIRNAME
from trio_core.engine.temp_dirs import owner_of
from trio_core.ffmpeg.procfs import ProcStat, boot_id, read_proc_stat
from trio_core.webrtc.hook import SDP_DIR_PREFIX

ROOT = Path(__file__).resolve().parents[3]


WEBRTC_PREFIX = SDP_DIR_PREFIX  # the WebRTC hook's per-run SDP folders


# ---------------------------------------------------------------------------------- helpers
@pytest.fixture
def marker() -> Iterator[str]:
    """A token for the command lines of this test's FFmpegs; whatever still carries it at the
    end (only after a failure) is killed, so a failing test leaves no orphan behind."""
    token = "hk" + secrets.token_hex(4)
    yield token
    for stats in marked_ffmpegs(token).values():
        for st in stats:
            if alive(st):
                os.kill(st.pid, signal.SIGKILL)


def marked(cfg: dict[str, Any], marker: str) -> dict[str, Any]:
    """Put ``title=<marker>-<id>`` into the process's command line (found via /proc)."""
    cfg["output"][0]["options"] = [*cfg["output"][0]["options"], "-metadata",
                                   f"title={marker}-{cfg['id']}"]
    return cfg


def marked_ffmpegs(marker: str) -> dict[str, list[ProcStat]]:
    """Live (non-zombie) processes whose command line carries ``marker``, by process id."""
    found: dict[str, list[ProcStat]] = {}
    pattern = re.compile(re.escape(f"title={marker}-") + r"(\S+)")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        m = pattern.search(cmdline)
        st = read_proc_stat(int(entry))
        if m is None or st is None or st.dead:
            continue
        found.setdefault(m[1], []).append(st)
    return found


def alive(st: ProcStat) -> bool:
    """The process identified by (pid, start time) still exists and is not a zombie."""
    now = read_proc_stat(st.pid)
    return now is not None and now.start_time == st.start_time and not now.dead


def dead_pid() -> tuple[int, int]:
    """(pid, start time) of a process that has exited."""
    p = subprocess.Popen(["true"])
    st = read_proc_stat(p.pid)
    p.wait()
    return p.pid, st.start_time if st is not None else 1


async def report_lines(api: Api, process_id: str) -> list[str]:
    report = (await api.get(f"/api/v3/process/{process_id}/report")).json()
    lines = [e[1] for h in report["history"] for e in h["log"]]
    return lines + [e[1] for e in report["log"]]


def identities(found: dict[str, ProcStat] | None) -> dict[str, tuple[int, int]] | None:
    """Which FFmpeg runs each process: (pid, start time), not its run state (R/S changes)."""
    return None if found is None else {k: (st.pid, st.start_time) for k, st in found.items()}


async def running_one_each(api: Api, marker: str, ids: list[str]) -> dict[str, ProcStat] | None:
    """Every process ``running`` over the API with exactly one FFmpeg, else None."""
    for pid in ids:
        if (await api.get(f"/api/v3/process/{pid}/state")).json()["exec"] != "running":
            return None
    found = marked_ffmpegs(marker)
    if sorted(found) != sorted(ids) or any(len(v) != 1 for v in found.values()):
        return None
    return {k: v[0] for k, v in found.items()}


# ---------------------------------------------------------------------------------- kill -9
@pytest.mark.slow
async def test_kill_9_leaves_no_ffmpeg_and_a_restart_runs_exactly_one_per_process(
        tmp_path: Path, ffmpeg: str, marker: str) -> None:
    env = server_env(tmp_path, ffmpeg)
    log = tmp_path / "server.log"
    ids = ["plain1", "plain2", "cam"]
    cfgs = [marked(tiny_process("plain1", reconnect=True, reconnect_delay_seconds=1), marker),
            marked(tiny_process("plain2", reconnect=True, reconnect_delay_seconds=1), marker),
            marked(webrtc_process("cam", autostart=True), marker)]
    async with server_subprocess(env, log) as (server, url):
        api = Api(url)
        for cfg in cfgs:
            assert (await api.post("/api/v3/process", cfg)).status_code == 200
        first = await wait_for(lambda: running_one_each(api, marker, ids), timeout=40)
        spawned = trio.current_time()
        # trio retires idle worker threads after ~10 s: a parent-death signal tied to one of
        # them would kill these FFmpegs now. They must keep running while the server lives.
        await trio.sleep(max(0.0, spawned + 16.0 - trio.current_time()))
        assert all(alive(st) for st in first.values()), "an FFmpeg died while the server lives"
        assert identities(await running_one_each(api, marker, ids)) == identities(first)
        assert server.poll() is None
        sdp_dirs = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith(WEBRTC_PREFIX)]
        assert len(sdp_dirs) == 1

        server.send_signal(signal.SIGKILL)
        killed_at = trio.current_time()
        while any(alive(st) for st in first.values()) and trio.current_time() - killed_at < 2.0:
            await trio.sleep(0.02)
        survivors = {k: st.pid for k, st in first.items() if alive(st)}
        assert not survivors, f"FFmpeg outlived the server by 2 s: {survivors}"
        server.wait()

    async with server_subprocess(env, log) as (server2, url2):
        api2 = Api(url2)
        second = await wait_for(lambda: running_one_each(api2, marker, ids), timeout=40)
        assert not set((st.pid, st.start_time) for st in second.values()) & set(
            (st.pid, st.start_time) for st in first.values())
        await trio.sleep(2.0)  # and it stays one each (no second start, no stray reconnect)
        assert identities(await running_one_each(api2, marker, ids)) == identities(second)
        # the crashed server's temp folder is gone; only the new server's is there
        sdp_dirs = [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith(WEBRTC_PREFIX)]
        assert len(sdp_dirs) == 1 and owner_of(sdp_dirs[0], WEBRTC_PREFIX) is not None
        assert owner_of(sdp_dirs[0], WEBRTC_PREFIX)[0] == server2.pid  # type: ignore[index]
        records = sorted(p.name for p in (tmp_path / "db" / DIRNAME).iterdir())
        assert records == sorted(f"{st.pid}.json" for st in second.values())
        server2.send_signal(signal.SIGTERM)  # graceful: every FFmpeg stopped, records removed
        with trio.fail_after(20):
            await trio.to_thread.run_sync(server2.wait)
        assert server2.returncode == 0
    assert marked_ffmpegs(marker) == {}
    assert list((tmp_path / "db" / DIRNAME).iterdir()) == []


# ---------------------------------------------------------------------------------- leftovers
def write_record(db: Path, pid: int, start_time: int, server: tuple[int, int],
                 process_id: str = "cam") -> None:
    d = db / DIRNAME
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{pid}.json").write_text(json.dumps({
        "pid": pid, "start_time": start_time, "boot_id": boot_id(), "process_id": process_id,
        "program": "ffmpeg", "server": {"pid": server[0], "start_time": server[1]}}))


async def test_recorded_leftovers_are_ended_before_anything_starts_and_nothing_else_is(
        tmp_path: Path, ffmpeg: str, marker: str) -> None:
    config = make_config(tmp_path, ffmpeg)
    db = tmp_path / "db"
    async with running_server(config) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", marked(tiny_process("cam"), marker))
        running = await wait_for(lambda: running_one_each(api, marker, ["cam"]))
        # while it runs, the FFmpeg is recorded in the db dir with its identity
        rec = json.loads((db / DIRNAME / f"{running['cam'].pid}.json").read_text())
        assert (rec["pid"], rec["start_time"], rec["process_id"]) == (
            running["cam"].pid, running["cam"].start_time, "cam")
        assert rec["server"]["pid"] == os.getpid()
    assert list((db / DIRNAME).iterdir()) == []  # reaped -> record removed

    # what a crashed instance leaves: its FFmpeg (own process group, as the engine runs them)
    leftover = subprocess.Popen(
        [ffmpeg, "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5",
         "-f", "null", "-metadata", f"title={marker}-cam", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
    recycled = subprocess.Popen(["sleep", "60"])  # its pid was recorded for an older process
    other_server = subprocess.Popen(["sleep", "60"])  # a live server on the same db dir
    owned_by_live = subprocess.Popen(["sleep", "60"])
    try:
        await wait_for(lambda: _has_ffmpeg(marker), timeout=10)
        gone = dead_pid()
        st = {p.pid: read_proc_stat(p.pid) for p in (leftover, recycled, other_server, owned_by_live)}
        assert all(v is not None for v in st.values())
        write_record(db, leftover.pid, st[leftover.pid].start_time, gone)  # type: ignore[union-attr]
        write_record(db, recycled.pid, st[recycled.pid].start_time - 1, gone)  # type: ignore[union-attr]
        write_record(db, owned_by_live.pid, st[owned_by_live.pid].start_time,  # type: ignore[union-attr]
                     (other_server.pid, st[other_server.pid].start_time))  # type: ignore[union-attr]
        (db / DIRNAME / "garbage.json").write_text("{not json")

        async with running_server(config) as srv:
            # the leftover was ended before serve reported it is running
            assert leftover.poll() == -signal.SIGKILL
            api = Api(srv.url)
            running = await wait_for(lambda: running_one_each(api, marker, ["cam"]))
            assert running["cam"].pid != leftover.pid
            assert recycled.poll() is None and owned_by_live.poll() is None
            names = sorted(p.name for p in (db / DIRNAME).iterdir())
            assert names == sorted([f"{running['cam'].pid}.json", f"{owned_by_live.pid}.json"])
    finally:
        for p in (leftover, recycled, other_server, owned_by_live):
            if p.poll() is None:
                p.kill()
            p.wait()


async def _has_ffmpeg(marker: str) -> bool:
    return bool(marked_ffmpegs(marker))


# ---------------------------------------------------------------------------------- hung FFmpeg
async def test_a_sigstopped_ffmpeg_is_replaced_within_stale_timeout_plus_1s(
        tmp_path: Path, ffmpeg: str, marker: str) -> None:
    stale = 5
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        cfg = marked(tiny_process("cam", reconnect=True, reconnect_delay_seconds=1,
                                  stale_timeout_seconds=stale), marker)
        await api.post("/api/v3/process", cfg)
        first = (await wait_for(lambda: running_one_each(api, marker, ["cam"])))["cam"]
        os.kill(first.pid, signal.SIGSTOP)
        stopped_at = trio.current_time()

        async def replaced() -> ProcStat | None:
            now = await running_one_each(api, marker, ["cam"])
            if now is None or now["cam"].pid == first.pid:
                return None
            return now["cam"]

        second = await wait_for(replaced, timeout=stale + 15, step=0.1)
        took = trio.current_time() - stopped_at
        assert took <= stale + 1, f"replaced after {took:.1f} s"
        assert not alive(first)
        lines = await report_lines(api, "cam")
        assert any("cannot act on q or SIGTERM" in line for line in lines), lines
        assert "FFmpeg killed by signal SIGKILL" in lines
        assert read_proc_stat(second.pid) is not None


async def test_stopping_a_sigstopped_ffmpeg_does_not_wait_for_q_and_sigterm(
        tmp_path: Path, ffmpeg: str, marker: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", marked(tiny_process("cam"), marker))
        first = (await wait_for(lambda: running_one_each(api, marker, ["cam"])))["cam"]
        os.kill(first.pid, signal.SIGSTOP)
        t0 = trio.current_time()
        resp = await api.put("/api/v3/process/cam/command", {"command": "stop"})
        took = trio.current_time() - t0
        assert resp.status_code == 200, resp.text
        # q + 3 s + SIGTERM + 2 s + SIGKILL would take >= 5 s
        assert took < 4.5, f"stop took {took:.1f} s"
        assert not alive(first)
        assert (await api.get("/api/v3/process/cam/state")).json()["exec"] == "killed"


async def test_a_signal_death_is_logged_with_the_signal_name(
        tmp_path: Path, ffmpeg: str, marker: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        await api.post("/api/v3/process", marked(tiny_process("cam", reconnect=False), marker))
        first = (await wait_for(lambda: running_one_each(api, marker, ["cam"])))["cam"]
        os.kill(first.pid, signal.SIGKILL)

        async def killed() -> bool:
            return (await api.get("/api/v3/process/cam/state")).json()["exec"] == "killed"

        await wait_for(killed)
        state = (await api.get("/api/v3/process/cam/state")).json()
        assert state["last_logline"] == "FFmpeg killed by signal SIGKILL"
        assert "FFmpeg killed by signal SIGKILL" in await report_lines(api, "cam")


# ---------------------------------------------------------------------------------- temp folders
async def test_stale_webrtc_temp_folders_are_removed_at_start_live_ones_kept(
        tmp_path: Path, ffmpeg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    gone_pid, gone_start = dead_pid()
    stale = tmp / f"{WEBRTC_PREFIX}{gone_pid}-{gone_start}-abc123"
    stale.mkdir()
    (stale / "cam.sdp").write_text("v=0\n")
    live_owner = subprocess.Popen(["sleep", "60"])
    try:
        live_st = read_proc_stat(live_owner.pid)
        assert live_st is not None
        live = tmp / f"{WEBRTC_PREFIX}{live_owner.pid}-{live_st.start_time}-def456"
        live.mkdir()
        recycled = tmp / f"{WEBRTC_PREFIX}{live_owner.pid}-{live_st.start_time + 1}-ghi789"
        recycled.mkdir()
        legacy = tmp / f"{WEBRTC_PREFIX}k2j4h5g6"  # older versions: no owner in the name
        legacy.mkdir()
        async with running_server(make_config(tmp_path, ffmpeg, **{"webrtc.enable": True})):
            names = {p.name for p in tmp.iterdir()}
            assert stale.name not in names and recycled.name not in names
            assert live.name in names and legacy.name in names
            mine = [n for n in names if (owner_of(n, WEBRTC_PREFIX) or (0,))[0] == os.getpid()]
            assert len(mine) == 1
        assert not (tmp / mine[0]).exists()  # removed at a clean shutdown
    finally:
        live_owner.kill()
        live_owner.wait()


# ---------------------------------------------------------------------------------- demo
async def test_the_demo_is_created_on_a_fresh_db_only_and_stays_deleted(
        tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **{"demo.enable": True})
    async with running_server(config) as srv:
        api = Api(srv.url)
        assert [p["id"] for p in (await api.get("/api/v3/process")).json()] == ["demo"]
        assert (await api.delete("/api/v3/process/demo")).status_code == 200
    for _ in range(2):
        async with running_server(config) as srv:
            assert (await Api(srv.url).get("/api/v3/process")).json() == []
    # a db that exists without the demo (another dir, created by a server without the demo)
    other = make_config(tmp_path / "other", ffmpeg)
    async with running_server(other) as srv:
        await Api(srv.url).post("/api/v3/process", tiny_process("x", autostart=False))
    async with running_server(other.replace(**{"demo.enable": True})) as srv:
        assert [p["id"] for p in (await Api(srv.url).get("/api/v3/process")).json()] == ["x"]


def test_the_docker_image_does_not_force_the_demo_on() -> None:
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines()
             if not ln.lstrip().startswith("#")]
    assert not re.search(r"CORE_DEMO_ENABLE=(true|1|yes|on)\b", "\n".join(lines), re.I)
