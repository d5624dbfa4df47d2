"""trio_core.storage.routes: ``/api/v3/fs`` lists the mounts and their files with Core's glob,
sort and order."""

from __future__ import annotations

from pathlib import Path

from trio_core.http.errors import install_error_handlers
from trio_core.storage.disk import DiskFS
from trio_core.storage.memfs import FileInfo, MemFS
from trio_core.storage.routes import fs_blueprint, sort_files
from trio_core.web import App


def test_sort_files_as_core() -> None:
    files = [FileInfo("/b", 1, 30.0), FileInfo("/a", 3, 20.0), FileInfo("/c", 2, 10.0)]
    assert [f.name for f in sort_files(files, "name", "asc")] == ["/a", "/b", "/c"]
    assert [f.name for f in sort_files(files, "size", "desc")] == ["/a", "/c", "/b"]
    assert [f.name for f in sort_files(files, "none", "asc")] == ["/c", "/a", "/b"]  # mtime


async def test_listing_mounts_and_files(tmp_path: Path) -> None:
    clock = iter([100.0, 200.0, 300.0])
    memfs = MemFS(clock=lambda: next(clock))
    memfs.write("/live/a.ts", b"12345")
    memfs.write("/live/b.m3u8", b"1")
    memfs.write("/other.txt", b"123")
    (tmp_path / "index.html").write_text("x")
    app = App(__name__)
    install_error_handlers(app)
    app.register_blueprint(fs_blueprint(memfs, DiskFS(str(tmp_path))))
    client = app.test_client()
    assert await (await client.get("/api/v3/fs")).get_json() == [
        {"name": "disk", "type": "disk", "mount": "/"},
        {"name": "mem", "type": "mem", "mount": "/memfs"}]
    listed = await (await client.get("/api/v3/fs/mem?glob=/live/*&sort=size&order=desc")).get_json()
    assert listed == [{"name": "/live/a.ts", "size_bytes": 5, "last_modified": 100},
                      {"name": "/live/b.m3u8", "size_bytes": 1, "last_modified": 200}]
    disk = await (await client.get("/api/v3/fs/disk")).get_json()
    assert [f["name"] for f in disk] == ["/index.html"]
    assert (await client.get("/api/v3/fs/nope")).status_code == 404
    assert (await client.get("/api/v3/fs/mem?glob=[")).status_code == 400
