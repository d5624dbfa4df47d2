"""``PUT /api/v3/config`` accepts only what a reload runs (issue 22 item 8).

One validation path for start, PUT and reload: a passphrase libsrt would refuse, a wrong JSON
type under a trio-core setting, an ``ffmpeg.binary`` hidden by ``CORE_FFMPEG_BINARY``, a
public bind without auth are refused by PUT as Core does (400 for wrong types, 409
``{field: [message]}`` for invalid values) and nothing is stored; what PUT accepts, a reload
runs; a config that still fails on reload does not stay in the file. Real servers through
:func:`trio_core.reload.serve_reloading` (what the CLI runs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api, assert_error, make_config, wait_for
from trio_core.config import v3_mapping as core_config
from trio_core.config.settings import SettingError
from trio_core.reload import serve_reloading
from trio_core.server import Running
from trio_core.srt.subsystem import SrtSubsystem


@asynccontextmanager
async def reloading_server(config) -> AsyncIterator[list[Running]]:  # type: ignore[no-untyped-def]
    runs: list[Running] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_reloading, config, load=core_config.load,
                                    on_running=runs.append))
        try:
            yield runs
        finally:
            runs[-1].shutdown()


async def reload(api: Api, runs: list[Running]) -> Running:
    count = len(runs)
    assert (await api.get("/api/v3/config/reload")).json() == "OK"

    async def restarted() -> bool:
        return len(runs) > count

    await wait_for(restarted, timeout=30)
    return runs[-1]


async def test_srt_passphrase_is_checked_by_put_and_a_valid_one_runs_after_reload(
        tmp_path: Path, ffmpeg: str) -> None:
    stored = tmp_path / "db" / "config.json"
    async with reloading_server(make_config(tmp_path, ffmpeg)) as runs:
        api = Api(runs[0].url)
        for passphrase in ("short", "p" * 100):
            resp = await api.put("/api/v3/config", {"version": 3, "srt": {
                "enable": True, "address": "127.0.0.1:0", "passphrase": passphrase}})
            assert resp.status_code == 409, resp.text
            body = resp.json()
            assert list(body) == ["srt.passphrase"], body
            assert "10 to 79 characters" in body["srt.passphrase"][0]
            assert not stored.exists()
        good = "correct horse battery"
        resp = await api.put("/api/v3/config", {"version": 3, "srt": {
            "enable": True, "address": "127.0.0.1:0", "passphrase": good}})
        assert resp.status_code == 200, resp.text
        second = await reload(api, runs)
        assert second.services.config["srt.passphrase"] == good
        srt = second.subsystem(SrtSubsystem)
        assert srt.error is None and srt.server.passphrase == good
        assert (await Api(second.url).get("/api/v3/srt")).status_code == 200


def test_a_passphrase_libsrt_refuses_is_refused_at_start_too(tmp_path: Path, ffmpeg: str) -> None:
    with pytest.raises(SettingError) as info:
        make_config(tmp_path, ffmpeg, **{"srt.enable": True, "srt.passphrase": "short"})
    assert info.value.key == "srt.passphrase"
    # SRT off: the passphrase is not used, as in Core
    make_config(tmp_path, ffmpeg, **{"srt.enable": False, "srt.passphrase": "short"})


async def test_wrong_types_of_trio_core_settings_are_400(tmp_path: Path, ffmpeg: str) -> None:
    async with reloading_server(make_config(tmp_path, ffmpeg)) as runs:
        api = Api(runs[0].url)
        for body, field in (({"api": {"address": 8080}}, "api.address"),
                            ({"webrtc": {"max_viewers": "many"}}, "webrtc.max_viewers"),
                            ({"demo": {"enable": "yes"}}, "demo.enable")):
            resp = assert_error(await api.put("/api/v3/config", {"version": 3, **body}), 400)
            assert resp["message"] == "Invalid JSON", resp
            assert field in resp["details"][0], resp
        assert not (tmp_path / "db" / "config.json").exists()
        # the right type: a value (our name for Core's address, which must agree with it)
        resp = await api.put("/api/v3/config", {"version": 3, "api": {"address": "x:1:2"}})
        assert resp.status_code == 409, resp.text


async def test_ffmpeg_binary_is_checked_although_the_environment_overrides_it(
        tmp_path: Path, ffmpeg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_FFMPEG_BINARY", ffmpeg)
    async with reloading_server(make_config(tmp_path, ffmpeg)) as runs:
        api = Api(runs[0].url)
        resp = await api.put("/api/v3/config", {"version": 3,
                                                "ffmpeg": {"binary": "/no/such/ffmpeg"}})
        assert resp.status_code == 409, resp.text
        assert list(resp.json()) == ["ffmpeg.binary"]
        assert not (tmp_path / "db" / "config.json").exists()


async def test_a_public_bind_without_auth_is_refused_by_put(tmp_path: Path, ffmpeg: str) -> None:
    async with reloading_server(make_config(tmp_path, ffmpeg)) as runs:
        api = Api(runs[0].url)
        resp = await api.put("/api/v3/config", {"version": 3, "address": ":0"})
        assert resp.status_code == 409, resp.text
        body = resp.json()
        assert list(body) == ["address"] and "without authentication" in body["address"][0]


async def test_a_config_that_fails_on_reload_does_not_stay_in_the_file(
        tmp_path: Path, ffmpeg: str) -> None:
    (tmp_path / "a-file").write_text("x")
    stored = tmp_path / "db" / "config.json"
    config = make_config(tmp_path, ffmpeg)
    async with reloading_server(config) as runs:
        api = Api(runs[0].url)
        # a good change first: stored and running
        assert (await api.put("/api/v3/config", {"version": 3, "name": "first"})).status_code == 200
        second = await reload(api, runs)
        assert (await Api(second.url).get("/api")).json()["name"] == "first"
        good = stored.read_bytes()
        # a change PUT cannot see fail (the directory cannot be created): the reload serves the
        # running config again, and the file is put back to it (the refused one kept aside)
        api = Api(second.url)
        bad_dir = str(tmp_path / "a-file" / "sub")
        resp = await api.put("/api/v3/config", {"version": 3,
                                                "storage": {"disk": {"dir": bad_dir}}})
        assert resp.status_code == 200, resp.text
        third = await reload(api, runs)
        assert third.services.config["storage.disk.dir"] == config["storage.disk.dir"]
        assert stored.read_bytes() == good
        rejected = json.loads(stored.with_name("config.json.rejected").read_text())
        assert rejected["storage"]["disk"]["dir"] == bad_dir
        doc = (await Api(third.url).get("/api/v3/config")).json()["config"]
        assert doc["storage"]["disk"]["dir"] == config["storage.disk.dir"]
        assert doc["name"] == "first"
