"""``GET /api/v3/fs`` and ``GET /api/v3/fs/{storage}`` (Core's listing routes; App).

The file routes ``/api/v3/fs/{storage}/{path}`` are served by :mod:`.mounts` (they stream).
Both listing routes sit under ``/api/v3`` and so get the API's JWT guard.

* ``/api/v3/fs`` -> ``[{"name": "disk", "type": "disk", "mount": "/"},
  {"name": "mem", "type": "mem", "mount": "/memfs"}]``
* ``/api/v3/fs/{storage}?glob=&sort=none|name|size|lastmod&order=asc|desc`` ->
  ``[{"name": "/a.ts", "size_bytes": 123, "last_modified": <unix s>}]``; an unknown storage
  is 404 ``File not found`` (as Core); a malformed glob 400 naming it. In a cluster
  (``StorageHTTP.remote_lists`` set) the other nodes' files are merged in (the newest entry of
  a name wins); a request with ``X-Trio-Core-Cluster-Hop`` lists this node's files only.
"""

from __future__ import annotations

from collections.abc import Callable

from trio_core.http.errors import ApiError, json_response
from trio_core.storage.disk import DiskFS
from trio_core.storage.memfs import FileInfo, MemFS
from trio_core.storage.mounts import StorageHTTP
from trio_core.util.glob import GlobError, compile_glob
from trio_core.web import Blueprint, Response, request

__all__ = ["fs_blueprint"]


def sort_files(files: list[FileInfo], sort: str, order: str) -> list[FileInfo]:
    """Core's ordering: ``name``, ``size``, else by modification time; ``desc`` reverses."""
    key: Callable[[FileInfo], object]
    if sort == "name":
        key = lambda f: f.name  # noqa: E731
    elif sort == "size":
        key = lambda f: f.size  # noqa: E731
    else:
        key = lambda f: f.mtime  # noqa: E731
    return sorted(files, key=key, reverse=(order == "desc"))


def fs_blueprint(memfs: MemFS, disk: DiskFS, http: StorageHTTP | None = None) -> Blueprint:
    bp = Blueprint("storage_fs", __name__)
    mounts = [("disk", disk, "/"), ("mem", memfs, "/memfs")]

    @bp.get("/api/v3/fs")
    async def list_storages() -> Response:
        return json_response([{"name": n, "type": fs.type, "mount": m} for n, fs, m in mounts])

    @bp.get("/api/v3/fs/<storage>")  # Core's parameter name (swagger: {storage})
    async def list_files(storage: str) -> Response:
        fs = {n: f for n, f, _ in mounts}.get(storage)
        if fs is None:
            raise ApiError(404, "File not found", f"unknown filesystem: {storage}")
        pattern = request.args.get("glob", "")
        try:
            compile_glob(pattern, "/")
        except GlobError as exc:
            raise ApiError(400, "Bad request", f"glob: {exc}") from None
        files = fs.list(pattern) if isinstance(fs, MemFS) else await fs.list(pattern)
        remote = http.remote_lists if http is not None else None
        if remote is not None and request.headers.get("X-Trio-Core-Cluster-Hop") is None:
            merged = {f.name: f for f in files}
            for name, size, mtime in await remote(storage, pattern,
                                                  request.headers.get("Authorization", "")):
                if name not in merged or merged[name].mtime < mtime:
                    merged[name] = FileInfo(name, size, mtime)
            files = list(merged.values())
        files = sort_files(files, request.args.get("sort", "none"), request.args.get("order", "asc"))
        return json_response([{"name": f.name, "size_bytes": f.size,
                               "last_modified": int(f.mtime)} for f in files])

    return bp
