"""HTTP API end to end: real hypercorn on 127.0.0.1, real HTTP (httpx in a thread), real FFmpeg."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process, wait_for
from tests.helpers.leaks import child_pids


async def frames(api: Api, process_id: str) -> tuple[str, int]:
    state = (await api.get(f"/api/v3/process/{process_id}/state")).json()
    return state["exec"], int(state.get("progress", {}).get("frame", 0) or 0)


# ---------------------------------------------------------------------------------- tests
async def test_about_and_errors(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        about = (await api.get("/api")).json()
        assert about["app"] == "datarhei-core"
        assert about["implementation"]["name"] == "trio-core"
        assert isinstance(about["uptime_seconds"], int)
        assert about["version"]["number"]
        assert (await api.get("/ping")).text == "pong"
        assert (await api.get("/api/v3/process")).json() == []

        assert_error(await api.get("/api/v3/process/nope"), 404)
        assert_error(await api.get("/api/v3/process/nope/state"), 404)
        assert_error(await api.get("/api/v3/process/nope/config"), 404)
        assert_error(await api.get("/api/v3/process/nope/report"), 404)
        assert_error(await api.delete("/api/v3/process/nope"), 404)
        assert_error(await api.put("/api/v3/process/nope", tiny_process("nope")), 404)
        # Core: a command for an unknown id is 400 "Command failed"
        body = assert_error(await api.put("/api/v3/process/nope/command", {"command": "start"}), 400)
        assert body["message"] == "Command failed"
        assert_error(await api.get("/api/v3/process/nope/metadata"), 404)
        # Core (echo) answers a missing route and a wrong method alike (checked against
        # Core v16.15: PATCH/PUT /api/v3/process, POST /api/v3/process/x, DELETE /api/v3/config)
        for method, path in (("GET", "/api/v3/no-such-route"), ("PATCH", "/api/v3/process"),
                             ("DELETE", "/api/v3/config"), ("POST", "/api/v3/skills")):
            resp = await api.request(method, path)
            assert resp.status_code == 404, (method, path)
            assert resp.content == b'{"code":404,"message":"Not Found","details":["Not Found"]}\n'
            assert resp.headers["content-type"] == "application/json; charset=UTF-8"
            assert "allow" not in resp.headers

        body = assert_error(await api.request("POST", "/api/v3/process", content=b"{not json",
                                              headers={"Content-Type": "application/json"}), 400)
        assert body["message"] == "Invalid JSON"
        assert "line 1" in body["details"][0]
        assert_error(await api.request("POST", "/api/v3/process", content=b"",
                                       headers={"Content-Type": "application/json"}), 400)

        bad = tiny_process("bad")
        bad["input"] = [{"id": "in", "address": "", "options": []}]
        body = assert_error(await api.post("/api/v3/process", bad), 400)
        assert "input" in " ".join(body["details"]), body

        bad = tiny_process("bad")
        bad["output"] = []
        body = assert_error(await api.post("/api/v3/process", bad), 400)
        assert body["message"] == "At least one input and one output need to be defined", body

        bad = tiny_process("bad", reconnect="sometimes")
        body = assert_error(await api.post("/api/v3/process", bad), 400)
        assert "reconnect" in " ".join(body["details"]), body
        assert (await api.get("/api/v3/process")).json() == []


@pytest.mark.slow
async def test_process_lifecycle_and_persistence(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg)
    before = child_pids()
    async with running_server(config) as srv:
        api = Api(srv.url)
        resp = await api.post("/api/v3/process", tiny_process("p1"))
        assert resp.status_code == 200, resp.text
        stored = resp.json()
        assert stored["id"] == "p1" and stored["input"][0]["address"].startswith("testsrc")

        # Core: a duplicate id is 400 "Invalid process config"
        body = assert_error(await api.post("/api/v3/process", tiny_process("p1")), 400)
        assert body["message"] == "Invalid process config"

        # running, frames increasing
        first = await wait_for(lambda: _running_frames(api, "p1", 1))
        await wait_for(lambda: _running_frames(api, "p1", first + 5))
        assert len(child_pids() - before) == 1

        listed = (await api.get("/api/v3/process")).json()
        assert [p["id"] for p in listed] == ["p1"]
        proc = listed[0]
        assert {"config", "state", "report"} <= set(proc)
        assert proc["type"] == "ffmpeg" and proc["reference"] == "tests"
        only_state = (await api.get("/api/v3/process?filter=state")).json()[0]
        assert "state" in only_state and "config" not in only_state and "report" not in only_state
        assert (await api.get("/api/v3/process?id=zzz")).json() == []
        assert len((await api.get("/api/v3/process?reference=tests")).json()) == 1
        assert (await api.get("/api/v3/process?reference=other")).json() == []
        assert len((await api.get("/api/v3/process?idpattern=p*")).json()) == 1

        got = (await api.get("/api/v3/process/p1")).json()
        assert got["id"] == "p1" and got["state"]["order"] == "start"
        assert (await api.get("/api/v3/process/p1/config")).json()["id"] == "p1"
        report = (await api.get("/api/v3/process/p1/report")).json()
        assert "log" in report

        # metadata
        assert (await api.put("/api/v3/process/p1/metadata/note", {"a": 1})).json() == {"a": 1}
        assert (await api.get("/api/v3/process/p1/metadata/note")).json() == {"a": 1}
        assert (await api.get("/api/v3/process/p1/metadata")).json() == {"note": {"a": 1}}
        assert_error(await api.get("/api/v3/process/p1/metadata/missing"), 404)

        # commands
        body = assert_error(await api.put("/api/v3/process/p1/command", {"command": "explode"}), 400)
        assert "start" in body["details"][0]
        assert_error(await api.request("PUT", "/api/v3/process/p1/command", content=b"nope",
                                       headers={"Content-Type": "application/json"}), 400)
        assert (await api.put("/api/v3/process/p1/command", {"command": "stop"})).json() == "OK"
        state = (await api.get("/api/v3/process/p1/state")).json()
        assert state["order"] == "stop"
        assert state["exec"] != "running"
        await wait_for(_gone(before))
        assert (await api.put("/api/v3/process/p1/command", {"command": "start"})).json() == "OK"
        await wait_for(lambda: _running_frames(api, "p1", 1))

        # second process, then delete it
        assert (await api.post("/api/v3/process", tiny_process("p2", autostart=False))).status_code == 200
        assert (await api.get("/api/v3/process/p2/state")).json()["order"] == "stop"
        assert (await api.delete("/api/v3/process/p2")).json() == "OK"
        assert_error(await api.get("/api/v3/process/p2"), 404)

    # server gone: no FFmpeg left, exit clean
    assert child_pids() == before

    # same db dir: p1 comes back running, with its metadata
    async with running_server(config) as srv:
        api = Api(srv.url)
        assert [p["id"] for p in (await api.get("/api/v3/process")).json()] == ["p1"]
        await wait_for(lambda: _running_frames(api, "p1", 1))
        assert (await api.get("/api/v3/process/p1/metadata/note")).json() == {"a": 1}
        assert (await api.put("/api/v3/process/p1/command", {"command": "stop"})).json() == "OK"
    assert child_pids() == before

    # stopped processes stay stopped across restarts
    async with running_server(config) as srv:
        api = Api(srv.url)
        state = (await api.get("/api/v3/process/p1/state")).json()
        assert state["order"] == "stop"
        assert child_pids() == before
    db = json.loads((tmp_path / "db" / "db.json").read_text())
    assert "p1" in json.dumps(db)


async def test_update_process(tmp_path: Path, ffmpeg: str) -> None:
    before = child_pids()
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        assert (await api.post("/api/v3/process", tiny_process("u1", autostart=False))).status_code == 200
        resp = await api.put("/api/v3/process/u1", {"reference": "changed"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["reference"] == "changed"
        assert resp.json()["input"][0]["address"].startswith("testsrc")  # partial update
        assert (await api.get("/api/v3/process/u1/config")).json()["reference"] == "changed"
        body = assert_error(await api.put("/api/v3/process/u1", {"output": []}), 400)
        assert "output" in " ".join(body["details"])
        assert (await api.get("/api/v3/process/u1/config")).json()["output"]  # untouched
        assert_error(await api.request("PUT", "/api/v3/process/u1", content=b"[1,",
                                       headers={"Content-Type": "application/json"}), 400)
    assert child_pids() == before


async def test_post_without_id_gets_one(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        cfg = tiny_process("x", autostart=False)
        del cfg["id"]
        resp = await api.post("/api/v3/process", cfg)
        assert resp.status_code == 200, resp.text
        new_id = resp.json()["id"]
        assert new_id
        assert (await api.get(f"/api/v3/process/{new_id}")).status_code == 200


async def test_demo_process(tmp_path: Path, ffmpeg: str) -> None:
    before = child_pids()
    async with running_server(make_config(tmp_path, ffmpeg, **{"demo.enable": True})) as srv:
        api = Api(srv.url)
        assert [p["id"] for p in (await api.get("/api/v3/process")).json()] == ["demo"]
        await wait_for(lambda: _running_frames(api, "demo", 1))
        assert (await api.put("/api/v3/process/demo/command", {"command": "stop"})).json() == "OK"
    assert child_pids() == before
    # a stopped demo is left alone on the next start
    async with running_server(make_config(tmp_path, ffmpeg, **{"demo.enable": True})) as srv:
        api = Api(srv.url)
        assert (await api.get("/api/v3/process/demo/state")).json()["order"] == "stop"
    assert child_pids() == before
    assert os.path.isdir(tmp_path / "data")


async def _running_frames(api: Api, process_id: str, at_least: int) -> int | None:
    exec_state, frame = await frames(api, process_id)
    return frame if exec_state == "running" and frame >= at_least else None


def _gone(before: set[int]) -> Callable[[], Any]:
    async def check() -> bool:
        return child_pids() <= before

    return check


