"""A process config and a metadata value are capped (issue 22 item 15b).

db.json is rewritten whole on every change, so one huge (but < 4 MiB) body per process or
metadata key made every later change rewrite megabytes. Real server: bodies over the caps get
Core-style 400s naming the field and the setting, nothing of them reaches db.json; bodies under
them are stored; the caps are settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process

MIB = 1024 * 1024


def refused(resp: httpx.Response) -> dict[str, Any]:
    """A Core-style 400 (the body of an unexpected answer is cut short: it may echo MiBs)."""
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    return assert_error(resp, 400)


async def test_default_caps_refuse_megabyte_configs_and_metadata(tmp_path: Path,
                                                                 ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as srv:
        api = Api(srv.url)
        huge = "x" * (3 * MIB // 2)  # 1.5 MiB: under the 4 MiB body limit, over the 1 MiB caps
        cfg = tiny_process("big", autostart=False)
        cfg["output"][0]["options"] = ["-metadata", f"comment={huge}", *cfg["output"][0]["options"]]
        body = refused(await api.post("/api/v3/process", cfg))
        detail = " ".join(body["details"])
        assert detail.startswith("output:") and "db.max_process_config_bytes" in detail, body

        small = tiny_process("small", autostart=False)
        assert (await api.post("/api/v3/process", small)).status_code == 200
        cfg["id"] = "small"
        body = refused(await api.put("/api/v3/process/small", cfg))
        assert "db.max_process_config_bytes" in " ".join(body["details"]), body
        assert body["message"] == "Process can't be updated"

        body = refused(await api.put("/api/v3/process/small/metadata/ui", {"x": huge}))
        assert body["details"][0].startswith("ui:"), body
        assert "db.max_metadata_value_bytes" in body["details"][0], body
        body = refused(await api.put("/api/v3/metadata/restreamer", {"x": huge}))
        assert body["details"][0].startswith("restreamer:"), body
        # under the caps: stored
        half = "y" * (MIB // 2)
        assert (await api.put("/api/v3/process/small/metadata/ui", {"x": half})).status_code == 200
        assert (await api.put("/api/v3/metadata/restreamer", {"x": half})).status_code == 200
        assert (await api.get("/api/v3/metadata/restreamer")).json() == {"x": half}
        # nothing refused reached the database (two 0.5 MiB values and a small process did)
        db = tmp_path / "db" / "db.json"
        assert db.stat().st_size < 1.2 * MIB
        assert (await api.get("/api/v3/process/big")).status_code == 404


async def test_the_caps_are_settings(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **{"db.max_process_config_bytes": 4000,
                                              "db.max_metadata_value_bytes": 100})
    async with running_server(config) as srv:
        api = Api(srv.url)
        cfg = tiny_process("p", autostart=False, reference="r" * 5000)
        body = refused(await api.post("/api/v3/process", cfg))
        assert body["details"][0].startswith("reference:"), body
        assert "4000" in body["details"][0]
        resp = await api.post("/api/v3/process", tiny_process("p", autostart=False))
        assert resp.status_code == 200, resp.text
        refused(await api.put("/api/v3/process/p/metadata/k", "z" * 200))
        assert (await api.put("/api/v3/process/p/metadata/k", "z" * 50)).status_code == 200
        refused(await api.put("/api/v3/metadata/k", ["z" * 200]))
        # null deletes whatever the cap
        resp = await api.request("PUT", "/api/v3/process/p/metadata/k", content="null",
                                 headers={"Content-Type": "application/json"})
        assert resp.status_code == 200, resp.text
    # 0 = no cap
    config = make_config(tmp_path, ffmpeg, **{"db.max_metadata_value_bytes": 0})
    async with running_server(config) as srv:
        resp = await Api(srv.url).put("/api/v3/metadata/k", "z" * (2 * 1024 * 1024))
        assert resp.status_code == 200
