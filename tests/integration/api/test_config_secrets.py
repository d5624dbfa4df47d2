"""Secrets drawn at random when left empty are the ones in use, and ``GET /api/v3/config``
shows them (as Core's config does): the memfs password FFmpeg gets through ``{memfs}`` is the
one in ``storage.memory.auth.password``, and it opens the public ``/memfs`` for writes."""

from __future__ import annotations

import urllib.parse

from tests.helpers.api import Api, make_config, running_server


async def test_random_memfs_password_is_in_the_config_and_works(ffmpeg: str, tmp_path) -> None:
    config = make_config(tmp_path, ffmpeg)
    password = config["storage.memory.auth.password"]
    assert len(password) >= 16
    async with running_server(config) as srv:
        api = Api(srv.url)
        shown = (await api.get("/api/v3/config")).json()["config"]["storage"]["memory"]["auth"]
        assert shown["enable"] is True and shown["password"] == password
        memfs = srv.supervisor.placeholders["memfs"]
        assert urllib.parse.urlsplit(memfs).password == password
        user = shown["username"]
        assert (await api.request("PUT", "/memfs/x.txt", content=b"x")).status_code == 401
        auth = httpx_basic(user, password)
        resp = await api.request("PUT", "/memfs/x.txt", content=b"x", headers=auth)
        assert resp.status_code == 201


def httpx_basic(user: str, password: str) -> dict[str, str]:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
