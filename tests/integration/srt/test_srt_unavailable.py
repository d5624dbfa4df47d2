"""SRT enabled but libsrt missing is visible where an operator looks (issue 22 item 14).

The real loader (:func:`trio_core.srt.binding.load`) is pointed at a library path that does
not exist, in an in-process server: ``GET /api/v3/srt`` answers 503 naming the missing
library (Core's error shape), ``GET /api`` carries a warning, the rest of the server runs.
"""

from __future__ import annotations

from functools import partial

from tests.helpers.api import Api, assert_error, make_config, running_server
from trio_core.srt import binding
from trio_core.srt import subsystem as srt_subsystem

MISSING = "/nonexistent/trio-core-test/libsrt.so.1.5"


async def test_srt_without_libsrt_answers_503_and_warns_in_about(ffmpeg: str, tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(srt_subsystem, "load", partial(binding.load, (MISSING,), lambda _: None))
    config = make_config(tmp_path, ffmpeg, **{"srt.enable": True, "srt.address": "127.0.0.1:0"})
    async with running_server(config) as srv:
        api = Api(srv.url)
        body = assert_error(await api.get("/api/v3/srt"), 503)
        detail = " ".join(body["details"])
        assert MISSING in detail and "libsrt" in detail, body
        assert "srt.enable" in detail, body
        about = (await api.get("/api")).json()
        assert about["app"] == "datarhei-core"  # Core's shape is kept
        warnings = about["implementation"]["warnings"]
        assert any("libsrt" in w and MISSING in w for w in warnings), warnings
        assert (await api.get("/api/v3/process")).status_code == 200
        assert "srt" not in srv.supervisor.placeholders


async def test_no_warning_when_srt_works_or_is_off(ffmpeg: str, tmp_path) -> None:
    for srt in (False, True):
        config = make_config(tmp_path, ffmpeg, **{"srt.enable": srt,
                                                  "srt.address": "127.0.0.1:0"})
        async with running_server(config) as srv:
            api = Api(srv.url)
            about = (await api.get("/api")).json()
            assert "warnings" not in about["implementation"], about
            status = (await api.get("/api/v3/srt")).status_code
            assert status == (200 if srt else 404)
