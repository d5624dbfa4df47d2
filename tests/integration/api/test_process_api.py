"""/api/v3/process as Core v16.16 answers it, replayed with the calls datarhei's clients make.

Real server (hypercorn on 127.0.0.1, port 0), real HTTP (httpx), real FFmpeg (lavfi). The
expected status codes and messages are Core's (http/handler/api/process.go); the expected
fields are those Core always emits (docs/swagger.json + the Go structs' omitempty tags).
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process, wait_for

# -- Core's always-present fields ----------------------------------------------------------
PROCESS_FIELDS = {"id", "type", "reference", "created_at", "updated_at"}
CONFIG_FIELDS = {"id", "type", "reference", "input", "output", "options", "reconnect",
                 "reconnect_delay_seconds", "autostart", "stale_timeout_seconds", "limits"}
CONFIG_IO_FIELDS = {"id", "address", "options"}
LIMITS_FIELDS = {"cpu_usage", "memory_mbytes", "waitfor_seconds"}
STATE_FIELDS = {"order", "exec", "runtime_seconds", "reconnect_seconds", "last_logline",
                "progress", "memory_bytes", "cpu_usage", "command"}
PROGRESS_FIELDS = {"inputs", "outputs", "frame", "packet", "fps", "q", "size_kb", "time",
                   "bitrate_kbit", "speed", "drop", "dup"}
PROGRESS_IO_FIELDS = {"id", "address", "index", "stream", "format", "type", "codec", "coder",
                      "frame", "keyframe", "framerate", "fps", "packet", "pps", "size_kb",
                      "bitrate_kbit", "extradata_size_bytes", "q", "avstream"}
REPORT_FIELDS = {"created_at", "prelude", "log", "history"}
PROBE_IO_FIELDS = {"url", "format", "index", "stream", "language", "type", "codec", "coder",
                   "bitrate_kbps", "duration_sec", "fps", "pix_fmt", "width", "height",
                   "sampling_hz", "layout", "channels"}
NUMBER = (int, float)


def check_config(cfg: dict[str, Any]) -> None:
    assert CONFIG_FIELDS <= set(cfg), cfg
    assert cfg["type"] == "ffmpeg"
    for io in cfg["input"] + cfg["output"]:
        assert CONFIG_IO_FIELDS <= set(io) and io["id"] and isinstance(io["options"], list), io
    assert set(cfg["limits"]) == LIMITS_FIELDS
    assert isinstance(cfg["options"], list)


def check_state(state: dict[str, Any]) -> None:
    assert STATE_FIELDS <= set(state), state
    assert state["order"] in ("start", "stop")
    assert state["exec"] in ("finished", "starting", "running", "finishing", "failed", "killed")
    assert isinstance(state["command"], list) and all(isinstance(a, str) for a in state["command"])
    assert isinstance(state["cpu_usage"], NUMBER) and isinstance(state["memory_bytes"], int)
    progress = state["progress"]
    assert PROGRESS_FIELDS <= set(progress), progress
    for io in progress["inputs"] + progress["outputs"]:
        assert PROGRESS_IO_FIELDS <= set(io), io
        assert io["id"], io  # never an empty id
        assert set(io["framerate"]) == {"min", "max", "avg"}
        for key in ("fps", "pps", "bitrate_kbit", "q"):
            assert isinstance(io[key], NUMBER), (key, io)
        if io["type"] == "video":
            assert io["width"] > 0 and io["height"] > 0 and io["pix_fmt"], io
        if io["type"] == "audio":
            assert io["sampling_hz"] > 0 and io["layout"], io


def check_report(report: dict[str, Any]) -> None:
    assert REPORT_FIELDS <= set(report), report
    assert all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
               for e in report["log"])


def q(process_id: str) -> str:
    """The id as the Restreamer UI puts it into a path (encodeURIComponent)."""
    return urllib.parse.quote(process_id, safe="")


def ui_ingest(channelid: str, data_dir: Path) -> dict[str, Any]:
    """The process config shape of restreamer-ui's UpsertIngest (src/utils/restreamer.js)."""
    return {
        "type": "ffmpeg",
        "id": f"restreamer-ui:ingest:{channelid}",
        "reference": channelid,
        "input": [
            {"id": "input_0", "address": "testsrc2=size=160x120:rate=10",
             "options": ["-f", "lavfi", "-re"]},
            {"id": "input_1", "address": "sine=frequency=440:sample_rate=44100",
             "options": ["-f", "lavfi", "-re"]},
        ],
        "output": [{
            "id": "output_0",
            "address": "{diskfs}/" + channelid + ".ts",
            "options": ["-dn", "-sn", "-map", "0:v", "-map", "1:a", "-codec:v", "libx264",
                        "-preset", "ultrafast", "-threads", "1", "-codec:a", "aac",
                        "-metadata", "title=x", "-metadata", "service_provider=datarhei-Restreamer",
                        "-f", "mpegts"],
            "cleanup": [
                {"pattern": f"diskfs:/{channelid}**", "max_files": 0,
                 "max_file_age_seconds": 0, "purge_on_delete": True},
            ],
        }],
        "options": ["-loglevel", "level+info", "-err_detect", "ignore_err", "-y"],
        "autostart": True,
        "reconnect": True,
        "reconnect_delay_seconds": 15,
        "stale_timeout_seconds": 30,
        "limits": {"cpu_usage": 0, "memory_mbytes": 0, "waitfor_seconds": 5},
    }


def ui_probe(channelid: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """restreamer-ui's Probe / ProbeIngest helper process."""
    return {
        "type": "ffmpeg",
        "id": f"restreamer-ui:ingest:{channelid}_probe",
        "reference": channelid,
        "input": inputs,
        "output": [{"id": "output_0", "address": "-",
                    "options": ["-dn", "-sn", "-codec", "copy", "-f", "null"]}],
        "options": [],
        "autostart": False,
        "reconnect": False,
    }


@pytest.mark.slow
async def test_restreamer_ui_channel_flow(tmp_path: Path, ffmpeg: str) -> None:
    channelid = str(uuid.uuid4())
    ingest = ui_ingest(channelid, tmp_path / "data")
    pid = ingest["id"]
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        # _upsertProcess: PUT first, 404 -> POST
        body = assert_error(await api.put(f"/api/v3/process/{q(pid)}", ingest), 404)
        assert body["message"] == "Process not found"
        resp = await api.post("/api/v3/process", ingest)
        assert resp.status_code == 200, resp.text
        stored = resp.json()
        check_config(stored)
        assert stored["id"] == pid and stored["reference"] == channelid
        assert [io["id"] for io in stored["input"]] == ["input_0", "input_1"]
        assert stored["output"][0]["cleanup"][0]["purge_on_delete"] is True
        assert stored["limits"] == {"cpu_usage": 0, "memory_mbytes": 0, "waitfor_seconds": 5}

        # the snapshot process (autostart off) and the UI's metadata
        snapshot = {**ui_probe(channelid, [{"id": "input_0", "address": "{diskfs}/x.ts",
                                            "options": []}]), "id": pid + "_snapshot"}
        assert (await api.post("/api/v3/process", snapshot)).status_code == 200
        meta = {"version": "1.5.0", "meta": {"name": "Livestream", "description": ""},
                "control": {"hls": {"storage": "diskfs"}}}
        resp = await api.put(f"/api/v3/process/{q(pid)}/metadata/restreamer-ui", meta)
        assert resp.status_code == 200 and resp.json() == meta
        assert (await api.get(f"/api/v3/process/{q(pid)}/metadata/restreamer-ui")).json() == meta

        # _discoverChannels: list with filter=metadata only
        listed = (await api.get("/api/v3/process?filter=metadata")).json()
        by_id = {p["id"]: p for p in listed}
        assert set(by_id) == {pid, pid + "_snapshot"}
        assert by_id[pid]["metadata"] == {"restreamer-ui": meta}
        assert by_id[pid + "_snapshot"]["metadata"] is None  # Core: null, the UI maps it to {}
        for p in listed:
            assert PROCESS_FIELDS <= set(p) and not {"config", "state", "report"} & set(p)

        # the UI's state poll: reference + filter=state; running, with progress
        async def running() -> dict[str, Any] | None:
            resp = await api.get(f"/api/v3/process?reference={channelid}&filter=state")
            procs = {p["id"]: p for p in resp.json()}
            state = procs[pid]["state"]
            return state if state["exec"] == "running" and state["progress"]["frame"] > 5 else None

        state = await wait_for(running, timeout=30)
        check_state(state)
        assert state["command"] == [  # Core's state.command: resolved args, no binary
            *ingest["options"], "-f", "lavfi", "-re", "-i", "testsrc2=size=160x120:rate=10",
            "-f", "lavfi", "-re", "-i", "sine=frequency=440:sample_rate=44100",
            *ingest["output"][0]["options"], str(tmp_path / "data" / f"{channelid}.ts")]
        kinds = {(io["id"], io["type"]) for io in state["progress"]["inputs"]}
        assert kinds == {("input_0", "video"), ("input_1", "audio")}
        assert {(io["id"], io["type"]) for io in state["progress"]["outputs"]} == {
            ("output_0", "video"), ("output_0", "audio")}

        # every field Core always emits, on the full object; numbers written as Core does
        raw = await api.get(f"/api/v3/process/{q(pid)}")
        full = raw.json()
        assert PROCESS_FIELDS | {"config", "state", "report", "metadata"} <= set(full)
        check_config(full["config"])
        check_state(full["state"])
        check_report(full["report"])
        assert re.search(r'"outputs":\[\{[^]]*"fps":\d+\.\d{3},', raw.text), raw.text[:2000]
        ios = full["state"]["progress"]["inputs"] + full["state"]["progress"]["outputs"]
        assert len(re.findall(r'"q":-?\d+\.\d{3}[,}]', raw.text)) >= len(ios)  # q on audio too

        # commands as the UI sends them
        for command in ("stop", "start"):
            resp = await api.put(f"/api/v3/process/{q(pid)}/command", {"command": command})
            assert resp.status_code == 200 and resp.json() == "OK"
        assert (await api.get(f"/api/v3/process/{q(pid)}/state")).json()["order"] == "start"

        # Probe (source wizard): delete old helper, add, probe, delete
        probe_id = pid + "_probe"
        assert_error(await api.delete(f"/api/v3/process/{q(probe_id)}"), 404)
        cfg = ui_probe(channelid, [{"id": "input_0", "address": "testsrc2=size=320x180:rate=25",
                                    "options": ["-f", "lavfi"]}])
        assert (await api.post("/api/v3/process", cfg)).status_code == 200
        probe = (await api.get(f"/api/v3/process/{q(probe_id)}/probe")).json()
        assert set(probe) == {"streams", "log"} and probe["log"]
        (stream,) = probe["streams"]
        assert set(stream) == PROBE_IO_FIELDS
        # the frame rate as FFmpeg prints it ("25 fps"; Core reads nothing else): FFmpeg 9's
        # lavfi stream (wrapped_avframe) has it, FFmpeg 5.1's (rawvideo) only "25 tbr": 0, as Core
        (line,) = [x for x in probe["log"] if "Stream #0:0" in x]
        fps = 25 if ", 25 fps," in line else 0
        assert fps or "wrapped_avframe" not in line, line
        assert (stream["type"], stream["width"], stream["height"], stream["fps"]) == (
            "video", 320, 180, fps)
        assert (await api.delete(f"/api/v3/process/{q(probe_id)}")).json() == "OK"

        # ProbeIngest: the input references the ingest's output (#id:output=oid)
        out_file = tmp_path / "data" / f"{channelid}.ts"
        await wait_for(lambda: _bigger_than(out_file, 20_000), timeout=30)
        cfg = ui_probe(channelid, [{"id": "input_0", "address": f"#{pid}:output=output_0",
                                    "options": []}])
        assert (await api.post("/api/v3/process", cfg)).status_code == 200
        probe = (await api.get(f"/api/v3/process/{q(probe_id)}/probe")).json()
        assert sorted(s["type"] for s in probe["streams"]) == ["audio", "video"], probe["log"]
        assert {s["url"] for s in probe["streams"]} == {str(out_file)}
        assert {s["codec"] for s in probe["streams"]} == {"h264", "aac"}
        assert (await api.delete(f"/api/v3/process/{q(probe_id)}")).json() == "OK"
        # a reference to an unknown process is refused as Core does
        bad = ui_probe(channelid, [{"id": "input_0", "address": "#nope:output=output_0"}])
        body = assert_error(await api.post("/api/v3/process", bad), 400)
        assert body["message"] == "Invalid process config" and "unknown process 'nope'" in body["details"][0]

        # unknown id: Core's probe answers 200 with the reason in the log
        resp = await api.get("/api/v3/process/nope/probe")
        assert resp.status_code == 200
        assert resp.json() == {"streams": [], "log": ["Unknown process ID (nope)"]}

        # channel delete as the UI does it
        for process_id in (pid, pid + "_snapshot"):
            assert (await api.delete(f"/api/v3/process/{q(process_id)}")).json() == "OK"
        assert (await api.get("/api/v3/process")).json() == []


async def _bigger_than(path: Path, size: int) -> bool:
    return path.exists() and path.stat().st_size > size


async def test_bind_and_status_codes_as_core(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        post = "/api/v3/process"

        async def post_err(body: Any, message: str, fragment: str = "", **kw: Any) -> None:
            resp = await api.post(post, body, **kw)
            got = assert_error(resp, 400)
            assert got["message"] == message, got
            assert fragment in " ".join(got["details"]), got

        # binding
        body = assert_error(await api.request("POST", post, content=json.dumps(tiny_process("x")),
                                              headers={"Content-Type": "text/plain"}), 400)
        assert body == {"code": 400, "message": "Invalid JSON",
                        "details": ["request doesn't contain JSON content"]}
        await post_err(tiny_process("x", reconnect_delay_seconds=-1), "Invalid JSON",
                       "reconnect_delay_seconds")
        await post_err(tiny_process("x", limits={"memory_mbytes": 1.5}), "Invalid JSON",
                       "limits.memory_mbytes")
        await post_err(tiny_process("x", stale_timeout_seconds="5"), "Invalid JSON",
                       "stale_timeout_seconds")
        await post_err(tiny_process("x", type="docker"), "Invalid JSON", "type")
        await post_err([tiny_process("x")], "Invalid JSON")
        no_input = tiny_process("x")
        del no_input["input"]
        await post_err(no_input, "Invalid JSON", "'Input' failed on the 'required' tag")
        # Core's quirks: type "" is unsupported on POST; empty lists pass the validator
        await post_err(tiny_process("x", type=""), "Unsupported process type")
        await post_err(tiny_process("x", input=[]),
                       "At least one input and one output need to be defined")
        # config validation
        bad = tiny_process("x")
        bad["input"][1]["address"] = "  "
        await post_err(bad, "Invalid process config", "input[1].address")
        await post_err(tiny_process("x", limits={"cpu_usage": -3}), "Invalid process config",
                       "limits.cpu_usage")
        for bad_id, char in (("a/b", "/"), ("a\r\nb", "\\r"), ("two words", " "), ("", "empty")):
            await post_err(tiny_process(bad_id), "Invalid process config", "id: ")
            await post_err(tiny_process(bad_id), "Invalid process config", char)
        assert (await api.get(post)).json() == []

        # unknown fields are ignored (newer clients send them)
        newer = tiny_process("n1", autostart=False, owner="me", domain="dom",
                             scheduler="@every 1h", runtime_duration_seconds=5)
        newer["limits"] = {"cpu_usage": 50, "memory_mbytes": 64, "waitfor_seconds": 3, "gpu": {}}
        newer["input"][0]["extra"] = True
        resp = await api.post(post, newer)
        assert resp.status_code == 200, resp.text
        assert "owner" not in resp.json()
        # a POST without id or IO ids gets shortuuids
        anon = tiny_process("", autostart=False)
        del anon["id"]
        for io in anon["input"] + anon["output"]:
            del io["id"]
        created = (await api.post(post, anon)).json()
        shortuuid = re.compile(r"[2-9A-HJ-NP-Za-km-z]{22}")
        assert all(shortuuid.fullmatch(x) for x in
                   [created["id"]] + [io["id"] for io in created["input"] + created["output"]])
        # duplicate
        await post_err(tiny_process("n1"), "Invalid process config", "process already exists")

        # PUT decodes onto the current config
        resp = await api.put("/api/v3/process/n1", {"limits": {"cpu_usage": 10},
                                                    "input": [{"address": "testsrc=size=64x64"}]})
        assert resp.status_code == 200, resp.text
        cfg = resp.json()
        assert cfg["limits"] == {"cpu_usage": 10, "memory_mbytes": 64, "waitfor_seconds": 3}
        assert cfg["input"] == [{"id": "video", "address": "testsrc=size=64x64",
                                 "options": ["-re", "-f", "lavfi"]}]  # Go reuses element 0
        assert cfg["output"] == newer["output"] and cfg["autostart"] is False
        got = assert_error(await api.put("/api/v3/process/n1", {"id": ""}), 400)
        assert got["message"] == "Process can't be updated" and got["details"] == [
            "id: an empty ID is not allowed"]
        got = assert_error(await api.put("/api/v3/process/n1", {"id": "x/y"}), 400)
        assert got["message"] == "Process can't be updated" and "id: " in got["details"][0]
        got = assert_error(await api.put("/api/v3/process/n1", {"id": created["id"]}), 400)
        assert got == {"code": 400, "message": "Process can't be updated",
                       "details": ["process already exists"]}
        got = assert_error(await api.put("/api/v3/process/n1", {"reconnect": 1}), 400)
        assert got["message"] == "Invalid JSON" and "reconnect" in got["details"][0]
        got = assert_error(await api.put("/api/v3/process/n1", {"output": []}), 400)
        assert got["message"] == "Process can't be updated"
        assert (await api.get("/api/v3/process/n1/config")).json() == cfg  # nothing changed
        # re-keying works and keeps metadata
        await api.put("/api/v3/process/n1/metadata/k", 1)
        resp = await api.put("/api/v3/process/n1", {"id": "n2", "reference": "r2"})
        assert resp.status_code == 200 and resp.json()["id"] == "n2"
        assert_error(await api.get("/api/v3/process/n1"), 404)
        assert (await api.get("/api/v3/process/n2/metadata/k")).json() == 1

        # commands
        cmd = "/api/v3/process/n2/command"
        got = assert_error(await api.put(cmd, {"command": "explode"}), 400)
        assert got == {"code": 400, "message": "Unknown command provided",
                       "details": ["Known commands are: start, stop, reload, restart"]}
        got = assert_error(await api.put(cmd, {}), 400)
        assert got["message"] == "Invalid JSON"
        got = assert_error(await api.put("/api/v3/process/zzz/command", {"command": "stop"}), 400)
        assert got == {"code": 400, "message": "Command failed", "details": ["unknown process"]}
        for path in ("", "/config", "/state", "/report", "/metadata"):
            got = assert_error(await api.get(f"/api/v3/process/zzz{path}"), 404)
            assert got["message"] == "Unknown process ID"
        got = assert_error(await api.request("PUT", "/api/v3/process/n2/metadata/k", content=b"1"),
                           400)
        assert got["details"] == ["request doesn't contain JSON content"]
        got = assert_error(await api.get("/api/v3/process/n2/metadata/none"), 404)
        assert got["details"] == ["unknown key"]
        # a CRLF id in the path is just unknown, never a 500
        assert_error(await api.get("/api/v3/process/a%0D%0Ab"), 404)
        assert_error(await api.delete("/api/v3/process/a%0D%0Ab"), 404)

        # list filters
        await api.post(post, tiny_process("restreamer-ui:ingest:c1", reference="c1",
                                          autostart=False))
        await api.post(post, tiny_process("restreamer-ui:egress:youtube:c1", reference="c1",
                                          autostart=False))

        async def ids(query: str) -> list[str]:
            resp = await api.get(f"/api/v3/process?{query}")
            assert resp.status_code == 200, resp.text
            return sorted(p["id"] for p in resp.json())

        everything = await ids("")
        assert len(everything) == 4
        assert set((await api.get("/api/v3/process?filter=nonsense")).json()[0]) == PROCESS_FIELDS
        assert await ids("idpattern=restreamer-ui:{ingest,egress}:*") == [
            "restreamer-ui:egress:youtube:c1", "restreamer-ui:ingest:c1"]
        assert await ids("idpattern=*:ingest:*&refpattern=c?") == ["restreamer-ui:ingest:c1"]
        assert await ids("idpattern=[abc") == []  # invalid pattern: nothing, as Core
        assert await ids("reference=c1&id=n2") == [  # reference wins over id
            "restreamer-ui:egress:youtube:c1", "restreamer-ui:ingest:c1"]
        assert await ids("id=n2,restreamer-ui:ingest:c1") == ["n2", "restreamer-ui:ingest:c1"]


async def test_restart_has_core_semantics(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        for pid, reconnect in (("once", False), ("again", True)):
            cfg = tiny_process(pid, reconnect=reconnect, reconnect_delay_seconds=0)
            assert (await api.post("/api/v3/process", cfg)).status_code == 200

        async def exec_state(pid: str) -> str:
            return str((await api.get(f"/api/v3/process/{pid}/state")).json()["exec"])

        for pid in ("once", "again"):
            await wait_for(lambda pid=pid: _is(exec_state(pid), "running"), timeout=30)
            resp = await api.put(f"/api/v3/process/{pid}/command", {"command": "restart"})
            assert resp.status_code == 200 and resp.json() == "OK"
        # without reconnect Core's restart only stops (order stays "start")
        state = (await api.get("/api/v3/process/once/state")).json()
        assert (state["order"], state["exec"]) == ("start", "finished")
        await trio.sleep(1.5)
        assert await exec_state("once") == "finished"
        # with reconnect it runs again: a new report, the previous run in the history
        await wait_for(lambda: _is(exec_state("again"), "running"), timeout=30)
        report = (await api.get("/api/v3/process/again/report")).json()
        assert len(report["history"]) >= 1
        # restart of a stopped process is a no-op, as Core
        await api.put("/api/v3/process/once/command", {"command": "stop"})
        assert (await api.put("/api/v3/process/once/command", {"command": "restart"})).json() == "OK"
        assert await exec_state("once") == "finished"


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_stored_processes_with_old_ids_load_and_can_be_deleted(tmp_path: Path,
                                                                     ffmpeg: str) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    odd_ids = ["old/slash", "with space", "ok-one"]
    processes = {}
    for pid in odd_ids:
        cfg = tiny_process(pid, autostart=False)
        cfg["owner"] = "from a newer Core"  # unknown stored fields load too
        processes[pid] = {"id": pid, "reference": "tests", "config": cfg, "order": "stop",
                          "created_at": 1, "updated_at": 1}
    db = {"version": 4, "process": processes,
          "metadata": {"system": {}, "process": {"old/slash": {"k": "v"}}}}
    (db_dir / "db.json").write_text(json.dumps(db))
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        assert sorted(p["id"] for p in (await api.get("/api/v3/process")).json()) == sorted(odd_ids)
        listed = (await api.get("/api/v3/process?id=old/slash")).json()
        assert listed[0]["metadata"] == {"k": "v"} and listed[0]["config"]["id"] == "old/slash"
        assert (await api.get(f"/api/v3/process/{q('with space')}/config")).status_code == 200
        # a legacy id can be renamed into a valid one, keeping its data
        resp = await api.put(f"/api/v3/process/{q('with space')}", {"id": "with-space"})
        assert resp.status_code == 200, resp.text
        assert (await api.delete(f"/api/v3/process/{q('old/slash')}")).json() == "OK"
        remaining = sorted(p["id"] for p in (await api.get("/api/v3/process")).json())
        assert remaining == ["ok-one", "with-space"]
    stored = json.loads((db_dir / "db.json").read_text())
    assert sorted(stored["process"]) == ["ok-one", "with-space"]


async def test_webrtc_legs_are_labelled_webrtc_in_progress(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **{"webrtc.enable": True})
    async with running_server(config) as srv:
        api = Api(srv.url)
        cfg = tiny_process("w", webrtc={"enabled": True})
        assert (await api.post("/api/v3/process", cfg)).status_code == 200

        async def outputs() -> list[dict[str, Any]] | None:
            state = (await api.get("/api/v3/process/w/state")).json()
            outs = state["progress"]["outputs"]
            return outs if state["exec"] == "running" and len(outs) >= 4 else None

        outs = await wait_for(outputs, timeout=30)
        assert [(o["id"], o["type"]) for o in outs] == [
            ("null", "video"), ("null", "audio"), ("webrtc", "video"), ("webrtc", "audio")]
        state = (await api.get("/api/v3/process/w/state")).json()
        check_state(state)
        assert not any("rtp" in arg for arg in state["command"])  # Core's argv: no hook legs
        # a CRLF id cannot be created, and WHEP for one is a plain 404 (no 500, no session)
        body = assert_error(await api.post("/api/v3/process", tiny_process("a\r\nb")), 400)
        assert body["details"][0].startswith("id: ")
        resp = await api.request("POST", "/api/v3/process/a%0D%0Ab/whep", content="v=0\r\n",
                                 headers={"Content-Type": "application/sdp"})
        assert resp.status_code == 404, resp.text
