"""Core v16.16 parity of the server-wide API, replayed the way datarhei's clients call it.

Real server (hypercorn on 127.0.0.1, port 0), real HTTP (httpx), real FFmpeg. Expected field
lists are written from Core's docs/swagger.json (api.About, api.Skills*, api.ConfigData,
api.Config) and the handlers under http/handler/api; status codes and messages from Core's
http/jwt and handler code.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process, wait_for
from trio_core.api.subsystem import CoreApiSubsystem
from trio_core.api.system_routes import MAX_METADATA_KEY_LENGTH
from trio_core.config import v3_mapping as core_config
from trio_core.config.settings import SETTINGS
from trio_core.reload import serve_reloading
from trio_core.server import Running, Services, serve
from trio_core.web import Blueprint, Response

AUTH = {"api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "s3cret"}


# swagger api.About / api.Version
ABOUT_FIELDS = {"app", "auths", "name", "id", "created_at", "uptime_seconds", "version"}


VERSION_FIELDS = {"number", "repository_commit", "repository_branch", "build_date", "arch",
                  "compiler"}


# swagger api.ConfigData, every leaf (dotted)
CORE_CONFIG_KEYS = """
address api.access.http.allow api.access.http.block api.access.https.allow api.access.https.block
api.auth.auth0.enable api.auth.auth0.tenants api.auth.disable_localhost api.auth.enable
api.auth.jwt.secret api.auth.password api.auth.username api.read_only created_at db.dir
debug.force_gc debug.memory_limit_mbytes debug.profiling ffmpeg.access.input.allow
ffmpeg.access.input.block ffmpeg.access.output.allow ffmpeg.access.output.block ffmpeg.binary
ffmpeg.log.max_history ffmpeg.log.max_lines ffmpeg.max_processes host.auto host.name id
log.level log.max_lines log.topics metrics.enable metrics.enable_prometheus metrics.interval_sec
metrics.range_sec name playout.enable playout.max_port playout.min_port router.blocked_prefixes
router.routes router.ui_path rtmp.address rtmp.address_tls rtmp.app rtmp.enable rtmp.enable_tls
rtmp.token service.enable service.token service.url sessions.enable sessions.ip_ignorelist
sessions.max_bitrate_mbit sessions.max_sessions sessions.persist sessions.persist_interval_sec
sessions.session_timeout_sec srt.address srt.enable srt.log.enable srt.log.topics srt.passphrase
srt.token storage.cors.origins storage.disk.cache.enable storage.disk.cache.max_file_size_mbytes
storage.disk.cache.max_size_mbytes storage.disk.cache.ttl_seconds storage.disk.cache.types.allow
storage.disk.cache.types.block storage.disk.dir storage.disk.max_size_mbytes
storage.memory.auth.enable storage.memory.auth.password storage.memory.auth.username
storage.memory.max_size_mbytes storage.memory.purge storage.mimetypes_file storage.s3 tls.address
tls.auto tls.cert_file tls.email tls.enable tls.key_file update_check version
""".split()


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted} missing"
        node = node[part]
    return node


def _assert_no_exception_text(text: str) -> None:
    for marker in ("Traceback", "Error:", "RecursionError", "ValueError", "JSONDecodeError",
                   "Exceeds the limit", "File \""):
        assert marker not in text, text


# ------------------------------------------------------------------------------ about, login
async def test_about_login_refresh_as_core(tmp_path: Path, ffmpeg: str) -> None:
    """Restreamer UI / core-client-go / core_client connect + login + refresh sequence."""
    async with running_server(make_config(tmp_path, ffmpeg, **AUTH)) as srv:
        srv.services.auth.login_delay = 0.05
        anon = Api(srv.url)
        # connect: Core's MinimalAbout without a token (no id: the clients then log in)
        minimal = (await anon.get("/api")).json()
        assert minimal == {"app": "datarhei-core", "auths": ["localjwt"],
                           "version": {"number": "16.0.0"}}
        assert (await anon.get("/api", headers={"Authorization": "Bearer junk"})).json() == minimal

        # login errors exactly as Core
        bad = assert_error(await anon.post("/api/login", {"username": "admin", "password": "x"}), 401)
        assert bad["message"] == "Unauthorized"
        assert bad["details"] == ["Invalid authorization credentials: invalid username or password"]
        missing = assert_error(await anon.post("/api/login", {"username": "admin"}), 400)
        assert missing == {"code": 400, "message": "Bad Request",
                           "details": ["Missing authorization credentials"]}
        no_json = await anon.request("POST", "/api/login",
                                     content=b'{"username": "admin", "password": "s3cret"}')
        assert assert_error(no_json, 400)["details"] == ["Missing authorization credentials"]

        resp = await anon.post("/api/login", {"username": "admin", "password": "s3cret"})
        assert resp.status_code == 200, resp.text
        tokens = resp.json()
        assert set(tokens) == {"access_token", "refresh_token"}
        for token, use, lifetime in ((tokens["access_token"], "access", 600),
                                     (tokens["refresh_token"], "refresh", 86400)):
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["iss"] == "datarhei-core"
            assert claims["sub"] == "admin"
            assert claims["usefor"] == use
            assert claims["exi"] == lifetime  # the UI schedules its refresh from exi
            assert claims["exp"] - claims["iat"] == lifetime
            assert len(claims["jti"]) == 36

        api = Api(srv.url, tokens["access_token"])
        about = (await api.get("/api")).json()
        assert ABOUT_FIELDS <= set(about)
        assert VERSION_FIELDS == set(about["version"])
        assert about["app"] == "datarhei-core" and about["auths"] == ["localjwt"]
        assert about["version"]["number"] == "16.16.0"
        assert len(about["id"]) == 36 and about["name"]
        time.strptime(about["created_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert isinstance(about["uptime_seconds"], int) and about["uptime_seconds"] >= 0
        assert about["implementation"]["name"] == "trio-core"

        # refresh: only with the refresh token
        refresh = await Api(srv.url, tokens["refresh_token"]).get("/api/login/refresh")
        assert refresh.status_code == 200 and set(refresh.json()) == {"access_token"}
        assert (await Api(srv.url, refresh.json()["access_token"]).get("/api/v3/skills")
                ).status_code in (200,)
        body = assert_error(await api.get("/api/login/refresh"), 401)
        assert body["details"] == ["Missing or invalid JWT token"]
        assert_error(await anon.get("/api/v3/config"), 401)
        assert_error(await anon.get("/api/v3/metadata/x"), 401)
        assert_error(await anon.get("/api/v3/log"), 401)

        # the id is stable across restarts (persisted in the db dir)
        instance_id = about["id"]
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        about = (await Api(srv.url).get("/api")).json()
        assert about["id"] == instance_id
        assert about["auths"] == []  # auth off: full about without a token
        # Core registers no login routes when auth is off
        assert_error(await Api(srv.url).post("/api/login", {"username": "a", "password": "b"}), 404)
        assert_error(await Api(srv.url).get("/api/login/refresh"), 404)


async def test_disable_localhost_lets_loopback_through(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **AUTH, **{"api.auth.disable_localhost": True})
    async with running_server(config) as srv:
        anon = Api(srv.url)
        about = (await anon.get("/api")).json()
        assert about["auths"] == ["localjwt"] and len(about["id"]) == 36  # full about
        assert (await anon.get("/api/v3/process")).status_code == 200
        assert (await anon.get("/api/v3/config")).json()["config"]["api"]["auth"][
            "disable_localhost"] is True
        srv.services.auth.disable_localhost = False  # the same request now needs a token
        assert_error(await anon.get("/api/v3/process"), 401)


async def test_parallel_wrong_passwords_are_slowed_down(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg, **AUTH)) as srv:
        throttle = srv.services.auth.throttle
        throttle.delay, throttle.max_delay = 0.3, 5.0
        answered: list[tuple[float, int]] = []
        started = trio.current_time()

        async def guess(client: httpx.AsyncClient, n: int) -> None:
            resp = await client.post(f"{srv.url}/api/login",
                                     json={"username": "admin", "password": f"guess{n}"})
            answered.append((trio.current_time() - started, resp.status_code))

        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            async with trio.open_nursery() as nursery:
                for n in range(40):
                    nursery.start_soon(guess, client, n)
                await trio.sleep(1.0)
                in_first_second = len(answered)
                nursery.cancel_scope.cancel()
        # answers go out one by one after 0.3, 0.3+0.6, 0.3+0.6+1.2 ... seconds
        assert in_first_second <= 2, answered
        assert all(status == 401 for _, status in answered), answered

        # more than max_waiting queued attempts of one address: refused at once with 429
        throttle.max_waiting = 3
        throttle.delay = 2.0
        statuses: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=30) as client:
            async with trio.open_nursery() as nursery:
                async def one() -> None:
                    statuses.append(await client.post(
                        f"{srv.url}/api/login", json={"username": "admin", "password": "no"}))
                for _ in range(10):
                    nursery.start_soon(one)
                await wait_for(_async(lambda: sum(r.status_code == 429 for r in statuses) >= 5),
                               timeout=10)
                nursery.cancel_scope.cancel()
        refused = [r for r in statuses if r.status_code == 429]
        assert refused and refused[0].headers["Retry-After"].isdigit()
        assert refused[0].json()["message"] == "Too Many Requests"


def _async(predicate: Any) -> Any:
    async def check() -> Any:
        return predicate()
    return check


# ------------------------------------------------------------------------------ skills
async def test_skills_from_the_ffmpeg_in_use(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        resp = await api.get("/api/v3/skills")
        assert resp.status_code == 200
        skills = resp.json()
        # swagger api.Skills: every field Core always emits
        assert set(skills) == {"ffmpeg", "filter", "hwaccels", "codecs", "devices", "formats",
                               "protocols"}
        assert set(skills["ffmpeg"]) == {"version", "compiler", "configuration", "libraries"}
        assert set(skills["codecs"]) == {"audio", "video", "subtitle"}
        assert set(skills["devices"]) == {"demuxers", "muxers"}
        assert set(skills["formats"]) == {"demuxers", "muxers"}
        assert set(skills["protocols"]) == {"input", "output"}

        # compared with what this FFmpeg itself says
        banner = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
        version = skills["ffmpeg"]["version"]
        assert version.count(".") == 2 and version.split(".")[0].isdigit()
        assert version.rsplit(".0", 1)[0] in banner.splitlines()[0]
        assert skills["ffmpeg"]["configuration"] in banner
        assert any(lib["name"] == "libavcodec" for lib in skills["ffmpeg"]["libraries"])
        encoders = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True,
                                  text=True).stdout
        h264 = next(c for c in skills["codecs"]["video"] if c["id"] == "h264")
        assert set(h264) == {"id", "name", "encoders", "decoders"}
        assert "h264" in h264["decoders"]
        for enc in h264["encoders"] or []:
            assert f" {enc} " in encoders
        filters = {f["id"] for f in skills["filter"]}
        assert {"scale", "testsrc", "sine", "aresample"} <= filters
        muxers = {f["id"] for f in skills["formats"]["muxers"]}
        demuxers = {f["id"] for f in skills["formats"]["demuxers"]}
        assert {"mpegts", "flv", "null", "hls"} <= muxers and {"lavfi" if False else "flv",
                                                                "mpegts"} <= demuxers
        assert "file" in {p["id"] for p in skills["protocols"]["input"]}
        assert "file" in {p["id"] for p in skills["protocols"]["output"]}
        lavfi = next(d for d in skills["devices"]["demuxers"] if d["id"] == "lavfi")
        assert set(lavfi) == {"id", "name", "devices"} and lavfi["devices"] == []
        for device_format in skills["devices"]["demuxers"] + skills["devices"]["muxers"]:
            for hw in device_format["devices"]:  # swagger api.SkillsHWDevice
                assert set(hw) == {"id", "name", "extra", "media"}
        for hw in skills["hwaccels"]:
            assert set(hw) == {"id", "name"}
        # the UI spreads encoders/decoders only when not null: each is a list or null
        for codec in skills["codecs"]["audio"] + skills["codecs"]["video"]:
            assert codec["encoders"] is None or isinstance(codec["encoders"], list)
            assert codec["decoders"] is None or isinstance(codec["decoders"], list)

        reloaded = await api.get("/api/v3/skills/reload")
        assert reloaded.status_code == 200 and reloaded.json() == skills


# ------------------------------------------------------------------------------ config
async def test_config_read_write_reload(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **AUTH)
    runs: list[Running] = []
    async with trio.open_nursery() as nursery:
        first: Running = await nursery.start(partial(
            serve_reloading, config, load=core_config.load, on_running=runs.append))
        try:
            first.services.auth.login_delay = 0.05
            login = await Api(first.url).post("/api/login", {"username": "admin",
                                                             "password": "s3cret"})
            api = Api(first.url, login.json()["access_token"])
            assert (await api.post("/api/v3/process", tiny_process("keep"))).status_code == 200

            resp = await api.get("/api/v3/config")
            assert resp.status_code == 200
            body = resp.json()
            assert set(body) == {"created_at", "loaded_at", "updated_at", "config", "overrides"}
            for key in ("created_at", "loaded_at", "updated_at"):
                time.strptime(body[key], "%Y-%m-%dT%H:%M:%SZ")
            assert isinstance(body["overrides"], list)
            doc = body["config"]
            for key in CORE_CONFIG_KEYS:
                _get(doc, key)
            assert doc["version"] == 3
            # our settings sit at Core's paths (and the divergent api.address at "address")
            assert doc["address"] == "127.0.0.1:0"
            assert doc["api"]["auth"]["enable"] is True and doc["api"]["auth"]["username"] == "admin"
            assert doc["ffmpeg"]["binary"] == ffmpeg
            assert doc["ffmpeg"]["log"]["max_lines"] == config["ffmpeg.log.max_lines"]
            # every declared setting shows up at its path, Core or extra
            for setting in SETTINGS:
                _get(doc, core_config.core_path(setting))
            assert doc["webrtc"]["enable"] is False  # an extra stays
            # Core keys not implemented: Core's defaults
            assert doc["tls"]["address"] == ":8181" and doc["router"]["blocked_prefixes"] == ["/api"]
            assert doc["sessions"]["ip_ignorelist"] == ["127.0.0.1/32", "::1/128"]
            assert doc["id"] == (await api.get("/api")).json()["id"]

            # bad input, nothing stored
            bad_kind = assert_error(await api.put("/api/v3/config", {"version": 3,
                                                                     "tls": {"enable": "yes"}}), 400)
            assert "tls.enable" in bad_kind["details"][0]
            bad_kind = assert_error(await api.put("/api/v3/config", {
                "version": 3, "ffmpeg": {"log": {"max_lines": "many"}}}), 400)
            assert "ffmpeg.log.max_lines" in bad_kind["details"][0]
            conflict = await api.put("/api/v3/config", {"version": 3, "address": "nonsense"})
            assert conflict.status_code == 409 and list(conflict.json()) == ["address"]
            conflict = await api.put("/api/v3/config", {"version": 3,
                                                        "api": {"auth": {"password": ""}}})
            assert conflict.status_code == 409 and "api.auth.password" in conflict.json()
            # Core's cross-field checks, with Core's field names
            conflict = await api.put("/api/v3/config", {"version": 3, "tls": {"enable": True}})
            assert conflict.status_code == 409
            assert conflict.json() == {"tls.enable": ["tls.certfile and tls.keyfile must be set"]}
            conflict = await api.put("/api/v3/config", {"version": 3, "metrics": {
                "enable": True, "range_sec": 10, "interval_sec": 20}})
            assert conflict.status_code == 409
            assert conflict.json()["metrics.interval"] == ["must be smaller than the range"]
            body = assert_error(await api.put("/api/v3/config", {"version": 2}), 400)
            assert body["message"] == "Invalid config version"
            assert_error(await api.put("/api/v3/config", [1, 2]), 400)
            assert_error(await api.request("PUT", "/api/v3/config", content=b"{"), 400)
            assert not (tmp_path / "db" / "config.json").exists()

            # a partial document: what is not sent is kept (Go decodes onto a copy)
            put = await api.put("/api/v3/config", {
                "version": 3, "name": "renamed", "rtmp": {"token": "pass-through"},
                "ffmpeg": {"log": {"max_lines": 77}}, "host": {"name": ["example.org"]},
                "no_such_key": 1,
            })
            assert put.status_code == 200 and put.json() == "OK"
            stored = json.loads((tmp_path / "db" / "config.json").read_text())
            assert stored["version"] == 3 and stored["name"] == "renamed"
            assert stored["rtmp"]["token"] == "pass-through" and stored["rtmp"]["app"] == "/"
            assert stored["ffmpeg"]["log"] == {"max_lines": 77,
                                               "max_history": config["ffmpeg.log.max_history"]}
            assert "no_such_key" not in stored
            doc = (await api.get("/api/v3/config")).json()["config"]
            assert doc["rtmp"]["token"] == "pass-through" and doc["host"]["name"] == ["example.org"]

            # reload: the server restarts in-process with the stored config
            reload = await api.get("/api/v3/config/reload")
            assert reload.status_code == 200 and reload.json() == "OK"
            await wait_for(_async(lambda: len(runs) == 2), timeout=30)
            second = runs[1]
            assert second.port == first.port  # an ephemeral port is kept
            assert second.services.config["ffmpeg.log.max_lines"] == 77
            api2 = Api(second.url, login.json()["access_token"])  # secret persisted: token valid
            about = (await api2.get("/api")).json()
            assert about["name"] == "renamed" and about["id"] == doc["id"]
            again = (await api2.get("/api/v3/config")).json()["config"]
            assert again["rtmp"]["token"] == "pass-through"
            await wait_for(_async_state(api2, "keep", "running"), timeout=30)
        finally:
            runs[-1].shutdown()


async def test_reload_into_a_config_that_cannot_start_keeps_serving(tmp_path: Path,
                                                                    ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg)
    (tmp_path / "a-file").write_text("x")
    runs: list[Running] = []
    async with trio.open_nursery() as nursery:
        first: Running = await nursery.start(partial(
            serve_reloading, config, load=core_config.load, on_running=runs.append))
        try:
            api = Api(first.url)
            bad = await api.put("/api/v3/config", {"version": 3,
                                                   "ffmpeg": {"binary": "/no/such/ffmpeg"}})
            assert bad.status_code == 409 and list(bad.json()) == ["ffmpeg.binary"]
            # accepted (Core does not check it either), but the server cannot start with it
            put = await api.put("/api/v3/config", {
                "version": 3, "storage": {"disk": {"dir": str(tmp_path / "a-file" / "sub")}}})
            assert put.status_code == 200
            assert (await api.get("/api/v3/config/reload")).json() == "OK"
            await wait_for(_async(lambda: len(runs) == 2), timeout=30)
            assert runs[1].services.config["storage.disk.dir"] == config["storage.disk.dir"]
            assert (await Api(runs[1].url).get("/api")).status_code == 200
        finally:
            runs[-1].shutdown()


async def test_reload_without_stored_config_keeps_tokens_valid(tmp_path: Path,
                                                               ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **AUTH)
    runs: list[Running] = []
    async with trio.open_nursery() as nursery:
        first: Running = await nursery.start(partial(
            serve_reloading, config, load=lambda _path: make_config(tmp_path, ffmpeg, **AUTH),
            on_running=runs.append))
        try:
            first.services.auth.login_delay = 0.05
            tokens = (await Api(first.url).post("/api/login", {"username": "admin",
                                                               "password": "s3cret"})).json()
            api = Api(first.url, tokens["access_token"])
            assert (await api.get("/api/v3/config/reload")).json() == "OK"
            await wait_for(_async(lambda: len(runs) == 2), timeout=30)
            # the random per-start JWT secret survived the reload
            assert (await Api(runs[1].url, tokens["access_token"]).get("/api/v3/process")
                    ).status_code == 200
            refreshed = await Api(runs[1].url, tokens["refresh_token"]).get("/api/login/refresh")
            assert refreshed.status_code == 200
        finally:
            runs[-1].shutdown()


def _async_state(api: Api, pid: str, exec_state: str) -> Any:
    async def check() -> bool:
        resp = await api.get(f"/api/v3/process/{pid}/state")
        return resp.status_code == 200 and resp.json()["exec"] == exec_state
    return check


def test_core_layout_config_file_and_env_names(tmp_path: Path) -> None:
    """A datarhei Core config file and Core's env var spellings load as-is."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "version": 3, "id": "11111111-2222-3333-4444-555555555555", "name": "core-file",
        "address": "127.0.0.1:18080", "update_check": False,
        "log": {"level": "warn", "topics": [], "max_lines": 500},
        "db": {"dir": str(tmp_path / "db")},
        "api": {"auth": {"enable": False, "jwt": {"secret": "abc"}}},
        "tls": {"enable": False, "address": ":8443"},
        "ffmpeg": {"binary": "ffmpeg", "log": {"max_lines": 20, "max_history": 2}},
        "router": {"routes": {"/a": "/b"}},
        "some_future_key": True,
    }))
    cfg = core_config.load(str(path), env={"CORE_FFMPEG_LOG_MAXHISTORY": "9",
                                           "RS_USERNAME": "legacy"})
    assert cfg["api.address"] == "127.0.0.1:18080"
    assert cfg["log.level"] == "warning" and cfg["log.max_lines"] == 500
    assert cfg["ffmpeg.log.max_lines"] == 20 and cfg["ffmpeg.log.max_history"] == 9
    assert cfg["api.auth.username"] == "legacy"
    store = core_config.CoreConfigStore(cfg, environ={"CORE_FFMPEG_LOG_MAXHISTORY": "9"})
    doc = store.response()["config"]
    assert doc["id"] == "11111111-2222-3333-4444-555555555555" and doc["name"] == "core-file"
    assert doc["log"]["level"] == "warn" and doc["tls"]["address"] == ":8443"
    assert doc["router"]["routes"] == {"/a": "/b"}
    assert "ffmpeg.log.max_history" in store.response()["overrides"]
    # a trio-core file stays strict about unknown keys
    other = tmp_path / "trio.json"
    other.write_text(json.dumps({"api": {"adress": "x"}}))
    with pytest.raises(core_config.SettingError, match="api.adress"):
        core_config.load(str(other), env={})


# ------------------------------------------------------------------------------ metadata, log
async def test_global_metadata_and_log(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg)
    async with running_server(config) as srv:
        api = Api(srv.url)
        assert (await api.get("/api/v3/metadata")).json() is None
        body = assert_error(await api.get("/api/v3/metadata/restreamer-ui"), 404)
        assert body["message"] == "Metadata not found"
        value = {"version": "2.12.0", "playersite": {"enable": False}, "n": [1, 2.5, None]}
        put = await api.put("/api/v3/metadata/restreamer-ui", value)
        assert put.status_code == 200 and put.json() == value
        assert (await api.get("/api/v3/metadata/restreamer-ui")).json() == value
        assert (await api.put("/api/v3/metadata/tmp", "x")).json() == "x"
        assert (await api.get("/api/v3/metadata")).json() == {"restreamer-ui": value, "tmp": "x"}
        body = assert_error(await api.request("PUT", "/api/v3/metadata/tmp", content=b"null"), 400)
        assert body["details"] == ["request doesn't contain JSON content"]  # as Core
        assert (await api.request("PUT", "/api/v3/metadata/tmp", content=b"null",
                                  headers={"Content-Type": "application/json"})).status_code == 200
        assert_error(await api.get("/api/v3/metadata/tmp"), 404)
        assert_error(await api.put("/api/v3/metadata/" + "k" * 300, 1), 400)
        longest = "k" * MAX_METADATA_KEY_LENGTH
        assert (await api.put(f"/api/v3/metadata/{longest}", 1)).status_code == 200
        body = assert_error(await api.put(f"/api/v3/metadata/{longest}k", 1), 400)
        assert body["details"] == [
            f"The key must not be longer than {MAX_METADATA_KEY_LENGTH} characters"]
        await api.request("PUT", f"/api/v3/metadata/{longest}", content=b"null",
                          headers={"Content-Type": "application/json"})  # deleted again

        logging.getLogger("trio_core.test").warning("marker %s", "for-the-ring",
                                                    extra={"processid": "p9x"})
        lines = (await api.get("/api/v3/log")).json()
        assert all(isinstance(line, str) for line in lines)
        marker = [line for line in lines if "for-the-ring" in line]
        assert marker and marker[0].startswith("ts=")
        assert ('level=WARN component="trio_core.test" msg="marker for-the-ring" processid="p9x"'
                in marker[0])
        raw = (await api.get("/api/v3/log?format=raw")).json()
        event = next(e for e in raw if e.get("message") == "marker for-the-ring")
        assert event["component"] == "trio_core.test" and event["level"] == "WARN"
        assert event["processid"] == "p9x"
        time.strptime(event["ts"], "%Y-%m-%dT%H:%M:%SZ")
    async with running_server(config) as srv:  # persisted with the db
        assert (await Api(srv.url).get("/api/v3/metadata/restreamer-ui")).json() == value


# ------------------------------------------------------------------------------ hostile input
class _Boom:
    """A subsystem with a route that fails, to see what a 500 looks like."""

    def __init__(self, services: Services) -> None:
        bp = Blueprint("boom", __name__)

        @bp.get("/api/v3/boom")
        async def boom() -> Response:
            raise RuntimeError("secret internal detail /etc/passwd")

        services.app.register_blueprint(bp)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


async def test_hostile_json_and_500s(tmp_path: Path, ffmpeg: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, ffmpeg)
    async with trio.open_nursery() as nursery:
        srv: Running = await nursery.start(partial(
            serve, config, subsystems=lambda s: [CoreApiSubsystem(
                s.app, s.supervisor, skills=s.skills, config_store=s.config_store,
                log_ring=s.log_ring, request_reload=s.lifecycle.request_reload), _Boom(s)]))
        try:
            api = Api(srv.url)
            hostile = {
                "deep": b"[" * 1000 + b"]" * 1000,
                "deeper": b'{"a":' * 5000 + b"1" + b"}" * 5000,
                "bigint": b'{"id": ' + b"9" * 5000 + b"}",
                "nan": b'{"id": NaN}',
                "huge-float": b'{"id": 1e999}',
                "not-utf8": b'{"id": "\xff"}',
            }
            routes = [("POST", "/api/v3/process"), ("PUT", "/api/v3/metadata/k"),
                      ("PUT", "/api/v3/config"), ("POST", "/api/login")]
            for name, payload in hostile.items():
                for method, path in routes:
                    resp = await api.request(method, path, content=payload,
                                             headers={"Content-Type": "application/json"})
                    expected = 404 if path == "/api/login" else 400  # auth off: no login route
                    body = assert_error(resp, expected)
                    _assert_no_exception_text(resp.text)
                    if expected == 400:
                        assert body["message"] == "Invalid JSON", (name, path, body)
            too_big = b'{"a": "' + b"x" * (5 * 1024 * 1024) + b'"}'
            resp = await api.request("PUT", "/api/v3/metadata/k", content=too_big,
                                     headers={"Content-Type": "application/json"})
            assert resp.status_code == 413
            assert (await api.get("/api/v3/metadata")).json() is None  # nothing stored

            caplog.clear()
            with caplog.at_level(logging.ERROR):
                resp = await api.get("/api/v3/boom")
            assert resp.status_code == 500
            _assert_no_exception_text(resp.text)
            assert "secret internal detail" not in resp.text and "RuntimeError" not in resp.text
            request_id = resp.headers["X-Request-ID"]
            assert resp.json()["request_id"] == request_id and len(request_id) == 32
            assert resp.json()["code"] == 500 and request_id in resp.json()["details"][0]
            logged = [r for r in caplog.records if request_id in r.getMessage()]
            assert logged and logged[0].exc_info is not None  # the traceback is in the log
        finally:
            srv.shutdown()


# ------------------------------------------------------------------------------ the CLI
def test_cli_core_config_file_env_names_and_reload(tmp_path: Path, ffmpeg: str) -> None:
    """``trio-core`` with a datarhei Core config file, Core's env names, PUT + reload."""
    import signal

    from tests.helpers.api import free_port
    from tests.helpers.cli import env_for, script, wait_http

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = tmp_path / "core.json"
    path.write_text(json.dumps({
        "version": 3, "name": "from-core-file", "address": f"127.0.0.1:{port}",
        "api": {"auth": {"enable": True, "jwt": {"secret": "a-fixed-secret"}}},
        "tls": {"enable": False}, "update_check": False,
    }))
    env = env_for(tmp_path, ffmpeg, CORE_CONFIGFILE=str(path), RS_USERNAME="admin",
                  RS_PASSWORD="pw", CORE_API_AUTH_LOGIN_BACKOFF_MS="50")
    proc = subprocess.Popen(script(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert wait_http(base + "/api", proc).json()["auths"] == ["localjwt"]
        token = httpx.post(base + "/api/login", json={"username": "admin", "password": "pw"},
                           timeout=10).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        about = httpx.get(base + "/api", headers=headers, timeout=10).json()
        assert about["name"] == "from-core-file"
        resp = httpx.post(base + "/api/v3/process", json=tiny_process("cli"), headers=headers,
                          timeout=20)
        assert resp.status_code == 200, resp.text
        cfg = httpx.get(base + "/api/v3/config", headers=headers, timeout=10).json()
        assert {"api.auth.username", "api.auth.password"} <= set(cfg["overrides"])
        put = httpx.put(base + "/api/v3/config", json={"version": 3, "name": "after-reload"},
                        headers=headers, timeout=10)
        assert put.status_code == 200, put.text
        assert httpx.get(base + "/api/v3/config/reload", headers=headers, timeout=10).json() == "OK"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the server exited instead of reloading"
            assert time.monotonic() < deadline, "no reload"
            try:
                about = httpx.get(base + "/api", headers=headers, timeout=2).json()
                if about.get("name") == "after-reload":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        while httpx.get(base + "/api/v3/process/cli/state", headers=headers,
                        timeout=5).json()["exec"] != "running":
            assert time.monotonic() < deadline, "the process did not come back"
            time.sleep(0.2)
        stored = json.loads(path.read_text())
        assert stored["name"] == "after-reload" and stored["update_check"] is False
        assert stored["api"]["auth"]["username"] == ""  # env overrides are not written
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.count(f"trio-core listening on {base}") == 2


def test_config_put_edge_cases(tmp_path: Path) -> None:
    """PUT semantics on the store itself: Go-like merge, kinds, conflicts, nothing half-written."""
    cfg = core_config.load(None, env={"CORE_DB_DIR": str(tmp_path / "db")})
    store = core_config.CoreConfigStore(cfg, environ={})
    before = store.response()

    def rejected(body: Any) -> core_config.ConfigRejected:
        with pytest.raises(core_config.ConfigRejected) as info:
            store.put(body)
        return info.value

    assert rejected({"version": 3, "api": {"address": "127.0.0.1:1"}}).errors == {
        "address": ["address and api.address disagree; set only one"]}
    assert rejected({"version": 3, "router": {"routes": {"/a": 1}}}).status == 400
    assert rejected({"version": 3, "rtmp": []}).details.endswith("of type struct")
    assert rejected({"version": 3, "sessions": {"max_sessions": -1}}).status == 400
    assert rejected({"version": True}).status == 400
    assert rejected({"version": 3, "log": {"level": "loud"}}).errors.keys() == {"log.level"}
    assert store.response()["config"] == before["config"]
    assert not (tmp_path / "db" / "config.json").exists()

    store.put({"version": 3, "log": {"level": "warn"}, "router": {"routes": None},
               "storage": {"disk": {"cache": {"ttl_seconds": 60.0}}},
               "host": {"name": ["a.example", "b.example"]}})
    doc = store.response()["config"]
    assert doc["log"]["level"] == "warn"  # Core's name, our "warning" inside
    assert doc["storage"]["disk"]["cache"]["ttl_seconds"] == 60
    assert doc["storage"]["disk"]["cache"]["types"]["block"] == [".m3u8", ".mpd"]  # kept
    assert doc["host"]["name"] == ["a.example", "b.example"]
    assert doc["router"]["routes"] is None
    reloaded = core_config.load(None, env={"CORE_DB_DIR": str(tmp_path / "db")})
    assert reloaded.config_file == str(tmp_path / "db" / "config.json")
    assert reloaded["log.level"] == "warning"
