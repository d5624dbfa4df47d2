"""Storage over real HTTP: /memfs, the disk mount at /, /api/v3/fs — against a real server
(hypercorn on 127.0.0.1, port 0), with httpx and raw sockets as clients."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import trio

from tests.helpers.api import Api, assert_error, make_config, running_server, tiny_process, wait_for
from trio_core.storage.subsystem import StorageSubsystem

AUTH = ("writer", "s3cret")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def raw_request(port: int, head: str) -> tuple[int, bytes]:
    """Send ``head`` verbatim (no client-side path normalisation); status and raw response."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(head.encode())
        data = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    return int(data.split(b" ", 2)[1]), data


def _config(tmp_path: Path, ffmpeg: str, **extra: object):  # type: ignore[no-untyped-def]
    return make_config(tmp_path, ffmpeg, **{
        "storage.memory.auth.username": AUTH[0], "storage.memory.auth.password": AUTH[1],
        **extra})


async def test_memfs_http(tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        # writes need Basic auth
        resp = await api.request("PUT", "/memfs/live/a.m3u8", content=b"#EXTM3U\n")
        body = assert_error(resp, 401)
        assert resp.headers["www-authenticate"] == "basic realm=Restricted"
        assert (await api.request("PUT", "/memfs/x", content=b"1",
                                  headers=_basic(AUTH[0], "wrong"))).status_code == 401
        assert (await api.request("DELETE", "/memfs/x")).status_code == 401
        # created, replaced
        resp = await api.request("PUT", "/memfs/live/a.m3u8?x=1", content=b"#EXTM3U\n",
                                 headers=_basic(*AUTH))
        assert resp.status_code == 201, resp.text
        assert resp.headers["content-location"] == "/memfs/live/a.m3u8?x=1"
        resp = await api.request("POST", "/memfs/live/a.m3u8", content=b"#EXTM3U\n#2\n",
                                 headers=_basic(*AUTH))
        assert resp.status_code == 204
        # reads are public, typed, ranged
        resp = await api.get("/memfs/live/a.m3u8")
        assert resp.status_code == 200 and resp.content == b"#EXTM3U\n#2\n"
        assert resp.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert "last-modified" in resp.headers
        payload = bytes(range(256)) * 4096  # 1 MiB, streamed out in chunks
        assert (await api.request("PUT", "/memfs/seg_1.ts", content=payload,
                                  headers=_basic(*AUTH))).status_code == 201
        resp = await api.get("/memfs/seg_1.ts")
        assert resp.content == payload and resp.headers["content-type"] == "video/MP2T"
        resp = await api.get("/memfs/seg_1.ts", headers={"Range": "bytes=1000-1999"})
        assert resp.status_code == 206 and resp.content == payload[1000:2000]
        assert resp.headers["content-range"] == f"bytes 1000-1999/{len(payload)}"
        resp = await api.request("HEAD", "/memfs/seg_1.ts")
        assert resp.status_code == 200 and resp.headers["content-length"] == str(len(payload))
        assert (await api.get("/memfs/seg_1.ts", headers={"Range": "bytes=9999999-"})).status_code == 416
        assert (await api.get("/memfs/unknown.bin")).headers["content-type"] == \
            "application/json; charset=UTF-8"
        body = assert_error(await api.get("/memfs/nope.ts"), 404)
        assert body["message"] == "File not found" and body["details"] == ["/nope.ts"]
        # CORS (storage.cors.origins default *)
        resp = await api.get("/memfs/seg_1.ts", headers={"Origin": "http://player.example"})
        assert resp.headers["access-control-allow-origin"] == "*"
        resp = await api.request("OPTIONS", "/memfs/seg_1.ts", headers={
            "Origin": "http://player.example", "Access-Control-Request-Method": "GET"})
        assert resp.status_code == 204 and "GET" in resp.headers["access-control-allow-methods"]
        # escapes refused (sent raw: no client normalises the path)
        for target in ("/memfs/../etc/passwd", "/memfs/a/../../b", "/api/v3/fs/disk/../../etc/passwd",
                       "/memfs/a%2F..%2F..%2Fb"):
            status, raw = await raw_request(srv.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                                      "Connection: close\r\n\r\n")
            assert status == 400, (target, raw)
        status, _ = await raw_request(srv.port, "PUT /memfs/../x HTTP/1.1\r\nHost: x\r\n"
                                                "Content-Length: 1\r\nConnection: close\r\n\r\nx")
        assert status in (400, 401)
        # delete
        resp = await api.request("DELETE", "/memfs/seg_1.ts", headers=_basic(*AUTH))
        assert resp.status_code == 200 and resp.text == "Deleted: /seg_1.ts"
        assert_error(await api.request("DELETE", "/memfs/seg_1.ts", headers=_basic(*AUTH)), 404)
        # chunked upload (no Content-Length), as FFmpeg sends it
        def put_chunked() -> httpx.Response:
            def body():  # type: ignore[no-untyped-def]  # a generator: httpx sends it chunked
                for i in range(50):
                    yield bytes([i]) * 10000
            return httpx.put(api.base + "/memfs/chunked.ts", content=body(), auth=AUTH, timeout=20)
        resp = await trio.to_thread.run_sync(put_chunked)
        assert resp.status_code == 201
        got = await api.get("/memfs/chunked.ts")
        assert got.content == b"".join(bytes([i]) * 10000 for i in range(50))


async def test_full_memfs_answers_as_core(tmp_path: Path, ffmpeg: str) -> None:
    config = _config(tmp_path, ffmpeg, **{"storage.memory.max_size_mbytes": 1})
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        half = b"x" * 600_000
        assert (await api.request("PUT", "/memfs/a", content=half, headers=_basic(*AUTH))).status_code == 201
        resp = await api.request("PUT", "/memfs/b", content=half, headers=_basic(*AUTH))
        body = assert_error(resp, 400)
        assert body["message"] == "Bad request" and body["details"] == ["not enough space on device"]
        resp = await api.request("PUT", "/memfs/c", content=b"y" * 2_000_000, headers=_basic(*AUTH))
        assert assert_error(resp, 400)["details"] == ["File is too big"]
        # the server keeps serving; what was stored is intact; nothing half-written is visible
        assert (await api.get("/memfs/a")).content == half
        assert (await api.get("/memfs/b")).status_code == 404
        assert (await api.get("/api/v3/process")).status_code == 200
        listing = (await api.get("/api/v3/fs/mem")).json()
        assert [f["name"] for f in listing] == ["/a"]
    # with purge the oldest file makes room
    config = _config(tmp_path / "p", ffmpeg, **{"storage.memory.max_size_mbytes": 1,
                                                 "storage.memory.purge": True})
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        for name in ("a", "b"):
            resp = await api.request("PUT", f"/memfs/{name}", content=half, headers=_basic(*AUTH))
            assert resp.status_code == 201
        assert (await api.get("/memfs/a")).status_code == 404
        assert (await api.get("/memfs/b")).content == half


async def test_disk_mount_and_fs_api(tmp_path: Path, ffmpeg: str) -> None:
    config = _config(tmp_path, ffmpeg)
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        # empty data dir: / is still the server's own page
        resp = await api.get("/")
        assert resp.status_code == 200 and "text/html" in resp.headers["content-type"]
        own_root = resp.text
        assert "trio-core" in own_root
        # filesystems
        assert (await api.get("/api/v3/fs")).json() == [
            {"name": "disk", "type": "disk", "mount": "/"},
            {"name": "mem", "type": "mem", "mount": "/memfs"}]
        assert_error(await api.get("/api/v3/fs/s3x"), 404)
        # API writes to disk (JWT guard is off in this config), reads through the mount
        resp = await api.request("PUT", "/api/v3/fs/disk/site/index.html", content=b"<p>hi</p>")
        assert resp.status_code == 201, resp.text
        assert (tmp_path / "data" / "site" / "index.html").read_bytes() == b"<p>hi</p>"
        resp = await api.request("PUT", "/api/v3/fs/disk/site/index.html", content=b"<p>hello</p>")
        assert resp.status_code == 204
        resp = await api.get("/site/")
        assert resp.status_code == 200 and resp.text == "<p>hello</p>"
        assert resp.headers["content-type"] == "text/html"
        (tmp_path / "data" / "clip.mp4").write_bytes(b"\0" * 5000)
        resp = await api.get("/clip.mp4", headers={"Range": "bytes=-100"})
        assert resp.status_code == 206 and len(resp.content) == 100
        assert resp.headers["content-type"] == "video/mp4"
        assert (await api.request("PUT", "/clip.mp4", content=b"x")).status_code in (404, 405)
        assert_error(await api.get("/nothing/here.txt"), 404)
        # the app's own routes win over disk files
        assert (await api.get("/ping")).text == "pong"
        # API file routes on memfs
        assert (await api.request("PUT", "/api/v3/fs/mem/x/1.ts", content=b"12")).status_code == 201
        assert (await api.request("PUT", "/api/v3/fs/mem/x/22.ts", content=b"1234")).status_code == 201
        assert (await api.request("PUT", "/api/v3/fs/mem/y.m3u8", content=b"1")).status_code == 201
        assert (await api.get("/api/v3/fs/mem/x/22.ts")).content == b"1234"
        listing = (await api.get("/api/v3/fs/mem?glob=/x/*.ts&sort=size&order=desc")).json()
        assert [f["name"] for f in listing] == ["/x/22.ts", "/x/1.ts"]
        assert set(listing[0]) == {"name", "size_bytes", "last_modified"}
        assert listing[0]["size_bytes"] == 4 and isinstance(listing[0]["last_modified"], int)
        names = [f["name"] for f in (await api.get("/api/v3/fs/mem?sort=name")).json()]
        assert names == ["/x/1.ts", "/x/22.ts", "/y.m3u8"]
        assert_error(await api.get("/api/v3/fs/mem?glob=/[x"), 400)
        resp = await api.delete("/api/v3/fs/mem/y.m3u8")
        assert resp.status_code == 200 and resp.text == "Deleted: /y.m3u8"
        assert_error(await api.delete("/api/v3/fs/mem/y.m3u8"), 404)
        assert_error(await api.get("/api/v3/fs/nofs/a"), 404)
        disk_names = [f["name"] for f in (await api.get("/api/v3/fs/disk?sort=name")).json()]
        assert disk_names == ["/clip.mp4", "/site/index.html"]
        # a data-dir index.html takes /, the dashboard stays at /dashboard
        (tmp_path / "data" / "index.html").write_text("<h1>my site</h1>")
        assert (await api.get("/")).text == "<h1>my site</h1>"
        assert (await api.get("/dashboard")).text == own_root
        # a symlink out of the data dir is not followed
        (tmp_path / "secret.txt").write_text("secret")
        (tmp_path / "data" / "leak.txt").symlink_to(tmp_path / "secret.txt")
        assert_error(await api.get("/leak.txt"), 404)
        assert_error(await api.get("/api/v3/fs/disk/leak.txt"), 404)


async def test_fs_api_needs_jwt_when_auth_is_on(tmp_path: Path, ffmpeg: str) -> None:
    config = _config(tmp_path, ffmpeg, **{"api.auth.enable": True, "api.auth.username": "u",
                                          "api.auth.password": "p"})
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        for method, path in (("GET", "/api/v3/fs"), ("GET", "/api/v3/fs/mem"),
                             ("GET", "/api/v3/fs/mem/a"), ("PUT", "/api/v3/fs/mem/a"),
                             ("DELETE", "/api/v3/fs/disk/a")):
            assert_error(await api.request(method, path, content=b"x"), 401)
        token = (await api.post("/api/login", {"username": "u", "password": "p"})).json()["access_token"]
        authed = Api(api.base, token)
        assert (await authed.request("PUT", "/api/v3/fs/mem/a", content=b"x")).status_code == 201
        assert (await authed.get("/api/v3/fs/mem/a")).content == b"x"
        # the mount itself stays public for reads
        assert (await api.get("/memfs/a")).content == b"x"


async def test_loopback_endpoint_challenges_before_100_continue(tmp_path: Path, ffmpeg: str) -> None:
    """FFmpeg's authenticated PUT: ``Expect: 100-continue`` without credentials must get the
    401 challenge *instead of* 100 (as Core's Go server answers), then the retry with Basic
    auth gets 100 and stores the file; persistent connections carry several uploads."""
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        port = srv.subsystem(StorageSubsystem).loopback.port
        assert port and port != srv.port
        status, raw = await raw_request(port, "PUT /memfs/a.ts HTTP/1.1\r\nHost: x\r\n"
                                              "Transfer-Encoding: chunked\r\n"
                                              "Expect: 100-continue\r\n\r\n")
        assert status == 401 and b"basic realm=Restricted" in raw and b" 100 " not in raw
        auth = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode())
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            got = b""
            for i in range(3):  # one connection, three uploads
                await stream.send_all(b"PUT /memfs/k%d.ts HTTP/1.1\r\nHost: x\r\n"
                                      b"Authorization: Basic %s\r\nTransfer-Encoding: chunked\r\n"
                                      b"Expect: 100-continue\r\n\r\n" % (i, auth))
                with trio.fail_after(10):
                    while b"100 " not in got:
                        got += await stream.receive_some(4096)
                got = b""
                await stream.send_all(b"5\r\nhello\r\n0\r\n\r\n")
                with trio.fail_after(10):
                    while b"\r\n\r\n" not in got:
                        got += await stream.receive_some(4096)
                assert got.startswith(b"HTTP/1.1 201"), got
                got = b""
        api = Api(f"http://127.0.0.1:{srv.port}")
        for i in range(3):
            assert (await api.get(f"/memfs/k{i}.ts")).content == b"hello"
        assert (await api.get("/memfs/a.ts")).status_code == 404
        status, _ = await raw_request(port, "NOT HTTP AT ALL\r\n\r\n")
        assert status == 400  # garbage gets a 400, the endpoint keeps serving
        # only /memfs is served there
        assert (await Api(f"http://127.0.0.1:{port}").get("/api/v3/process")).status_code == 404


async def test_cleanup_rules_on_disk_and_purge_at_shutdown(tmp_path: Path, ffmpeg: str) -> None:
    """Rules hold while the process exists, running or not (as Core); purge_on_delete files
    go at server shutdown; files no rule matches stay."""
    data = tmp_path / "data"
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        cfg = tiny_process("snap", autostart=False)
        cfg["output"][0]["cleanup"] = [{"pattern": "diskfs:/{processid}/*.jpg", "max_files": 2,
                                        "purge_on_delete": True}]
        cfg["output"][0]["options"] = ["-metadata", "comment={diskfs}/snap/{fs:disk}",
                                       *cfg["output"][0]["options"]]
        assert (await api.post("/api/v3/process", cfg)).status_code == 200
        command = (await api.get("/api/v3/process/snap/state")).json()["command"]
        root = str(data.resolve())
        assert f"comment={root}/snap/{root}" in command  # {diskfs} and {fs:disk}
        for i in range(5):
            resp = await api.request("PUT", f"/api/v3/fs/disk/snap/{i}.jpg", content=b"jpg")
            assert resp.status_code == 201
        (data / "other.jpg").write_bytes(b"x")

        async def two_left() -> bool:
            return sorted(p.name for p in (data / "snap").iterdir()) == ["3.jpg", "4.jpg"]

        await wait_for(two_left, timeout=15)
    assert list((data / "snap").iterdir()) == []  # purged at shutdown
    assert (data / "other.jpg").exists()


async def test_delete_purges_before_it_returns(tmp_path: Path, ffmpeg: str) -> None:
    """As Core: a deleted process's ``purge_on_delete`` files are gone when DELETE returns,
    and files a new process of the same id writes right after are never purged by the old
    rules (they were purged at the next sweep: the new process's HLS playlist vanished)."""
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        cfg = tiny_process("hls", autostart=False)
        cfg["output"][0]["cleanup"] = [{"pattern": "memfs:/{processid}**", "max_files": 50,
                                        "purge_on_delete": True}]
        auth = _basic(*AUTH)
        for round_ in range(3):
            assert (await api.post("/api/v3/process", cfg)).status_code == 200
            resp = await api.request("PUT", "/memfs/hls.m3u8", content=b"#EXTM3U\n",
                                     headers=auth)
            assert resp.status_code == 201, round_
            assert (await api.delete("/api/v3/process/hls")).status_code == 200
            assert (await api.get("/memfs/hls.m3u8")).status_code == 404  # purged already
            assert (await api.post("/api/v3/process", cfg)).status_code == 200
            resp = await api.request("PUT", "/memfs/hls.m3u8", content=b"#EXTM3U\n",
                                     headers=auth)
            assert resp.status_code == 201
            await trio.sleep(1.5)  # more than a sweep interval
            assert (await api.get("/memfs/hls.m3u8")).status_code == 200, round_
            assert (await api.delete("/api/v3/process/hls")).status_code == 200


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def test_readers_share_the_stored_bytes(tmp_path: Path, ffmpeg: str) -> None:
    """20 slow readers of one 8 MB memfs file: the server holds the file once plus small
    per-reader buffers, not a copy per reader (which would be 160 MB)."""
    size, readers = 8 * 1024 * 1024, 20
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        payload = bytes(range(256)) * (size // 256)
        assert (await api.request("PUT", "/memfs/big.mp4", content=payload,
                                  headers=_basic(*AUTH))).status_code == 201
        del payload
        before = _rss_bytes()
        received = [0] * readers
        peak = [before]
        done = trio.Event()

        async def slow_reader(i: int) -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            async with stream:
                await stream.send_all(b"GET /memfs/big.mp4 HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    received[i] += len(chunk)
                    if received[i] < size // 2:
                        await trio.sleep(0.01)  # slow at first: the server must wait on us

        async def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_bytes())
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            with trio.fail_after(120):
                async with trio.open_nursery() as readers_nursery:
                    for i in range(readers):
                        readers_nursery.start_soon(slow_reader, i)
            done.set()
        assert all(n > size for n in received), received  # headers + the whole body
        growth = peak[0] - before
        assert growth < 60 * 1024 * 1024, f"RSS grew by {growth / 1e6:.0f} MB"


async def test_aborted_upload_leaves_nothing(tmp_path: Path, ffmpeg: str) -> None:
    """A writer that disconnects mid-body (public port and loopback endpoint): no file, no
    bytes held, the previous version of the file still served."""
    async with running_server(_config(tmp_path, ffmpeg)) as srv:
        storage = srv.subsystem(StorageSubsystem)
        api = Api(f"http://127.0.0.1:{srv.port}")
        assert (await api.request("PUT", "/memfs/v.ts", content=b"old",
                                  headers=_basic(*AUTH))).status_code == 201
        auth = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode())
        for port in (srv.port, storage.loopback.port):
            for name in (b"v.ts", b"new.ts"):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"PUT /memfs/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s"
                                      b"\r\nContent-Length: 100000\r\n\r\n" % (name, auth)
                                      + b"x" * 50000)
                await trio.sleep(0.3)
                await stream.aclose()

        async def settled() -> bool:
            return storage.memfs.reserved == 0

        await wait_for(settled, timeout=10)
        assert (await api.get("/memfs/v.ts")).content == b"old"
        assert (await api.get("/memfs/new.ts")).status_code == 404
        assert storage.memfs.used == 3
