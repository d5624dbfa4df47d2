"""HTTP access to the storages, as an ASGI layer in front of the API app.

Handled here (everything else goes to the wrapped app unchanged):

* ``/memfs/<path>`` — memfs. ``GET``/``HEAD`` public (``Range``, ``Last-Modified``,
  ``Content-Type`` by extension, default ``application/data``); ``PUT``/``POST`` store the body
  (201 created / 204 replaced, ``Content-Location``), ``DELETE`` (200 ``Deleted: <path>``,
  404) — both behind HTTP Basic auth when credentials are configured (401, ``WWW-Authenticate:
  basic realm=Restricted``). Wrong Basic credentials back off per client address as
  ``/api/login`` does (:class:`~trio_core.http.login_throttle.LoginThrottle`: guesses from one
  address answered one at a time, each failure waiting longer; 429 + ``Retry-After`` when too
  many queue); a request without Basic credentials (FFmpeg's first try, which asks for the
  challenge) is no guess and gets its 401 at once. The loopback endpoint (scope extension
  ``trio_core.loopback``) keeps its own count, so guesses on the public port never hold up
  FFmpeg's ``{memfs}`` uploads. A full memfs answers 400 ``{"message": "Bad request", "details":
  ["not enough space on device"]}`` as Core.
* ``/<path>`` — the disk directory, read-only, ``index.html`` for directories, default type
  ``text/html``; only for ``GET``/``HEAD`` paths that no route of the app claims. ``/`` is the
  disk's ``index.html`` when there is one, else the app's own ``/`` (the dashboard).
* ``/api/v3/fs/<storage>/<path>`` — ``GET``/``HEAD``/``PUT``/``DELETE`` on ``mem`` or ``disk``
  with the API's JWT (when API auth is on) instead of Basic auth.
* CORS for the mounts (``storage.cors.origins``, as Core's echo middleware: reflected
  ``Access-Control-Allow-Origin``, preflight 204) and ``*`` for ``/api``.

Streaming both ways: request bodies are pulled from the server chunk by chunk (the server
stops reading the socket while memfs is busy, so an upload holds at most one chunk beyond
what memfs accounted), and files go out in :data:`CHUNK` slices of the stored bytes (no copy
per reader beyond the slice being sent). Bad paths (``..``, NUL, backslash) get 400, never
a traceback. A client that disconnects mid-upload leaves nothing behind.

Sessions: when set, ``StorageHTTP.sessions`` (the observability subsystem's
:class:`~trio_core.observability.hls_sessions.HLSSessions`, Core's HLS session middleware) is called
around every request to the memfs and disk mounts (not ``/api/v3/fs``, as in Core); it
passes segment bodies through unchanged and only buffers playlists it rewrites.

Cluster (issue 20): when ``StorageHTTP.remote_files`` is set (by the cluster subsystem), a
``GET``/``HEAD`` of a file this node's memfs or disk does not have is looked up on the other
nodes (``remote_files(storage, name)`` -> ``(data, mtime)`` or None) and answered like a
local file; a request carrying ``X-Trio-Core-Cluster-Hop`` (one node asking another) is never
forwarded again.

Cancellation: each request is one call of this ASGI app in the server's request task;
cancelling it drops an unfinished upload (memfs keeps the previous version of the file).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hmac
import json
import os
import stat as stat_module
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import trio
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect

from trio_core.http.go_json import JSON_CONTENT_TYPE_BYTES
from trio_core.http.login_throttle import LoginThrottle, Throttled
from trio_core.storage.disk import DiskFS
from trio_core.storage.memfs import MemFS, NoSpace
from trio_core.storage.mime import DISK_DEFAULT, MEM_DEFAULT, content_type
from trio_core.storage.paths import BadPath, clean_path

if TYPE_CHECKING:
    from trio_core.httpd.server import Channel
    from trio_core.observability.sessions import Collector

__all__ = ["CHUNK", "StorageHTTP"]

CHUNK = 256 * 1024
MEMFS_PREFIX = "/memfs"
API_FS_PREFIX = "/api/v3/fs/"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``await middleware(scope, receive, send, handler)`` runs ``handler`` with accounting around it
Middleware = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]

CORS_METHODS = b"GET,HEAD,PUT,POST,DELETE,PATCH"
CORS_HEADERS = b"Origin,Content-Length,Content-Type,Authorization"


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


_DATES: dict[float, bytes] = {}


def _http_date(timestamp: float) -> bytes:
    text = _DATES.get(timestamp)
    if text is None:
        if len(_DATES) >= 1024:
            _DATES.clear()
        text = _DATES[timestamp] = email.utils.formatdate(timestamp, usegmt=True).encode()
    return text


def _header_size(headers: Headers) -> int:
    """A header block's size as the HLS session middleware counts it (``k: v\r\n`` each)."""
    return sum(len(k) + len(v) + 4 for k, v in headers)


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end_inclusive)`` for a single satisfiable ``bytes=`` range, ``None`` when the
    header is absent or not a single byte range (serve everything), ``"unsatisfiable"``."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, sep, last = value[6:].strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return max(size - suffix, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


class StorageHTTP:
    """The ASGI layer; ``app`` is the wrapped ASGI app (the app's ``asgi_app``).

    ``memfs_credentials`` = (user, password) for writes to /memfs, None = open.
    ``api_token_ok(token)`` checks an API bearer token; None = API auth off.
    ``routes()`` returns the app's URL map (to let its routes win over disk files).
    ``throttle`` backs off wrong Basic credentials per client address (None = no backoff).
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, memfs: MemFS,
        disk: DiskFS, memfs_credentials: tuple[str, str] | None, cors_origins: Sequence[str],
        api_token_ok: Callable[[str], bool] | None, routes: Callable[[], Map],
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.app = app
        self.memfs = memfs
        self.disk = disk
        self.memfs_credentials = memfs_credentials
        self.cors_origins = list(cors_origins)
        self.api_token_ok = api_token_ok
        self.routes = routes
        self.throttle = throttle
        self.storages: dict[str, MemFS | DiskFS] = {"mem": memfs, "disk": disk}
        #: wraps every mount request (set by the observability subsystem: HLS sessions)
        self.sessions: Middleware | None = None
        #: files of other nodes (set by the cluster subsystem): (storage, name) -> (data, mtime)
        self.remote_files: Callable[[str, str], Awaitable[tuple[bytes, float] | None]] | None = None
        #: listings of other nodes (set by the cluster subsystem): (storage, glob, authorization)
        #: -> [(name, size, mtime)]; merged into ``GET /api/v3/fs/{storage}`` (routes.py)
        self.remote_lists: Callable[[str, str, str], Awaitable[list[tuple[str, int, float]]]] | None = None

    # -- the direct route (no ASGI) ------------------------------------------------------------
    async def direct_memfs(self, channel: Channel) -> bool:
        """``GET``/``HEAD`` of a stored ``/memfs`` file answered by the HTTP server directly
        (:class:`trio_core.httpd.dispatch.Dispatch`): head and the stored bytes (a
        ``memoryview``, no copy) in one write, with the HLS session accounting of a segment
        exactly as the middleware does it. Everything else — a missing file, a ``Range``,
        a percent-encoded or unclean path, a playlist the session middleware rewrites, a
        request with a body — returns False untouched: the ASGI path answers it."""
        request = channel.request
        if request is None or request.method not in ("GET", "HEAD") or request.has_body:
            return False
        raw, _, query = request.target.partition(b"?")
        if b"%" in raw or b"\\" in raw or b"/." in raw or b"//" in raw:
            return False
        origin: str | None = None
        for key, value in request.headers:
            if key == b"range" or key == b"x-trio-core-cluster-hop":
                return False
            if key == b"origin":
                origin = value.decode("latin-1")
        path = raw.decode("latin-1")
        name = path[len(MEMFS_PREFIX):]
        if not name or name == "/" or name.endswith("/") or len(name) > 4096:
            return False
        egress: Collector | None = None
        sid = ""
        ip = channel.client[0]
        if self.sessions is not None and path.endswith((".m3u8", ".ts")):
            egress = getattr(self.sessions, "egress", None)
            if egress is not None:
                if path.endswith(".m3u8"):
                    return False  # rewritten per session by the middleware
                if not egress.collectable(ip):
                    egress = None
                elif b"session" in query:
                    sid = next((v for k, v in parse_qsl(query.decode("latin-1"),
                                                        keep_blank_values=True)
                                if k == "session"), "")
        file = self.memfs.open(name)
        if file is None:
            return False
        data = file.data
        cors = self._cors_for(origin) if origin else None
        headers = (cors or []) + [
            (b"content-type", content_type(name, MEM_DEFAULT).encode()),
            (b"last-modified", _http_date(file.mtime)), (b"accept-ranges", b"bytes"),
            (b"content-length", b"%d" % len(data)),
        ]
        head = request.method == "HEAD"
        if egress is None:
            await channel.respond(200, headers, b"" if head else memoryview(data), len(data))
            return True
        try:
            egress.egress(sid, _header_size(headers))
            await channel.respond(200, headers, b"" if head else memoryview(data), len(data))
            if not head:
                egress.egress(sid, len(data))
        finally:
            egress.activate(sid)  # as the middleware: a segment request activates
        return True

    # -- dispatch -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == MEMFS_PREFIX or path.startswith(MEMFS_PREFIX + "/"):
            await self._with_sessions(scope, receive, send, self._memfs_mount)
            return
        if path.startswith(API_FS_PREFIX):
            name, sep, rest = path[len(API_FS_PREFIX):].partition("/")
            if sep:
                await self._api(scope, receive, send, name, "/" + rest)
                return
        elif (method in ("GET", "HEAD", "OPTIONS") and not path.startswith("/api")
              and not self._app_route(path)):
            await self._with_sessions(scope, receive, send, self._disk_or_app)
            return
        await self.app(scope, receive, send)

    async def _with_sessions(self, scope: Scope, receive: Receive, send: Send,
                             handler: ASGIApp) -> None:
        if self.sessions is None:
            await handler(scope, receive, send)
        else:
            await self.sessions(scope, receive, send, handler)

    async def _memfs_mount(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._mount(scope, receive, send, "mem", scope["path"][len(MEMFS_PREFIX):])

    async def _disk_or_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._disk(scope, send, scope["path"]):
            await self.app(scope, receive, send)

    def _app_route(self, path: str) -> bool:
        """True when the app has a route for ``GET path`` (its pages win over disk files)."""
        if path == "/":
            return False
        try:
            self.routes().bind("localhost").match(path, method="GET")
        except NotFound:
            return False
        except (MethodNotAllowed, RequestRedirect):
            return True
        return True

    # -- the mounts ---------------------------------------------------------------------------
    async def _disk(self, scope: Scope, send: Send, path: str) -> bool:
        """Serve a disk file for GET/HEAD; False to let the app answer instead."""
        cors = self._cors(scope)
        if scope["method"] == "OPTIONS":
            if path == "/" or cors is None:
                return False
            await self._preflight(send, cors)
            return True
        try:
            name = clean_path(path)
        except BadPath as exc:
            await self._error(scope, send, 400, "Bad request", str(exc), cors)
            return True
        found = await self.disk.open_file(name, "index.html")
        if found is None:
            if path == "/":
                return False  # empty data dir: the app's dashboard
            if not await self._remote(scope, send, "disk", name, cors, DISK_DEFAULT):
                await self._error(scope, send, 404, "File not found", name, cors)
            return True
        await self._send_disk_file(scope, send, found, DISK_DEFAULT, cors)
        return True

    async def _mount(self, scope: Scope, receive: Receive, send: Send, storage: str,
                     raw: str) -> None:
        cors = self._cors(scope)
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(send, cors or [])
            return
        try:
            name = clean_path(raw)
        except BadPath as exc:
            await self._error(scope, send, 400, "Bad request", str(exc), cors)
            return
        if method in ("GET", "HEAD"):
            await self._get(scope, send, storage, name, cors)
        elif method in ("PUT", "POST", "DELETE"):
            if not await self._write_allowed(scope, send, cors):
                pass  # refused (401/429 sent)
            elif method == "DELETE":
                await self._delete(scope, send, storage, name, cors)
            else:
                await self._put(scope, receive, send, storage, name, cors)
        else:
            await self._error(scope, send, 405, "Method Not Allowed", "Method Not Allowed", cors,
                              [(b"allow", b"GET, HEAD, PUT, POST, DELETE, OPTIONS")])

    async def _api(self, scope: Scope, receive: Receive, send: Send, storage: str,
                   raw: str) -> None:
        cors: Headers = [(b"access-control-allow-origin", b"*")]
        method = scope["method"]
        if method == "OPTIONS":
            await self._respond(send, 204, cors + [
                (b"access-control-allow-headers", b"Authorization, Content-Type"),
                (b"access-control-allow-methods", b"GET, HEAD, PUT, DELETE, OPTIONS")])
            return
        if self.api_token_ok is not None:
            header = _header(scope, b"authorization") or ""
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not self.api_token_ok(token.strip()):
                await self._error(scope, send, 401, "Unauthorized", "Missing or invalid JWT token",
                                  cors, [(b"www-authenticate", b"Bearer")])
                return
        if storage not in self.storages:
            await self._error(scope, send, 404, "File not found",
                              f"unknown filesystem: {storage}", cors)
            return
        try:
            name = clean_path(raw)
        except BadPath as exc:
            await self._error(scope, send, 400, "Bad request", str(exc), cors)
            return
        if method in ("GET", "HEAD"):
            await self._get(scope, send, storage, name, cors, MEM_DEFAULT)
        elif method == "PUT":
            await self._put(scope, receive, send, storage, name, cors)
        elif method == "DELETE":
            await self._delete(scope, send, storage, name, cors)
        else:
            await self._error(scope, send, 405, "Method Not Allowed", "Method Not Allowed", cors,
                              [(b"allow", b"GET, HEAD, PUT, DELETE, OPTIONS")])

    # -- operations ---------------------------------------------------------------------------
    async def _get(self, scope: Scope, send: Send, storage: str, name: str,
                   cors: Headers | None, default_type: str = MEM_DEFAULT) -> None:
        if storage == "mem":
            file = self.memfs.open(name)
            if file is None:
                if not await self._remote(scope, send, storage, name, cors, default_type):
                    await self._error(scope, send, 404, "File not found", name, cors)
                return
            data = file.data
            await self._send_bytes(scope, send, name, data, file.mtime, default_type, cors)
            return
        found = await self.disk.open_file(name)
        if found is None:
            if not await self._remote(scope, send, storage, name, cors, default_type):
                await self._error(scope, send, 404, "File not found", name, cors)
            return
        await self._send_disk_file(scope, send, found, default_type, cors)

    async def _remote(self, scope: Scope, send: Send, storage: str, name: str,
                      cors: Headers | None, default_type: str) -> bool:
        """Answer with another cluster node's file (True), if there is one."""
        if self.remote_files is None or _header(scope, b"x-trio-core-cluster-hop") is not None:
            return False
        found = await self.remote_files(storage, name)
        if found is None:
            return False
        await self._send_bytes(scope, send, name, found[0], found[1], default_type, cors)
        return True

    async def _put(self, scope: Scope, receive: Receive, send: Send, storage: str, name: str,
                   cors: Headers | None) -> None:
        if name == "/":
            await self._error(scope, send, 400, "Bad request", "a file name is required", cors)
            return
        try:
            if storage == "mem":
                length = _header(scope, b"content-length")
                upload = self.memfs.begin_write(
                    name, int(length) if length and length.isdigit() else None)
                try:
                    async for chunk in self._body(receive):
                        upload.feed(chunk)
                    created = upload.commit()
                finally:
                    upload.discard()
            else:
                assert isinstance(self.storages[storage], DiskFS)
                created = await self.disk.write(name, self._body(receive))
        except ClientGone:
            return
        except NoSpace as exc:
            await self._error(scope, send, 400, "Bad request", str(exc), cors)
            return
        except (OSError, ValueError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            await self._error(scope, send, 400, "Bad request", detail, cors)
            return
        location = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            location += b"?" + scope["query_string"]
        headers = (cors or []) + [(b"content-location", location)]
        if created:
            await self._respond(send, 201, headers + [(b"content-type", b"text/plain; charset=UTF-8")])
        else:
            await self._respond(send, 204, headers)

    async def _delete(self, scope: Scope, send: Send, storage: str, name: str,
                      cors: Headers | None) -> None:
        fs = self.storages[storage]
        size = fs.remove(name) if isinstance(fs, MemFS) else await fs.remove(name)
        if size < 0:
            await self._error(scope, send, 404, "File not found", name, cors)
            return
        await self._respond(send, 200, (cors or []) + [
            (b"content-type", b"text/plain; charset=UTF-8")], f"Deleted: {name}".encode())

    # -- bodies -------------------------------------------------------------------------------
    @staticmethod
    async def _body(receive: Receive) -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _ranged(self, scope: Scope, send: Send, name: str, size: int, mtime: float,
                      default_type: str, cors: Headers | None
                      ) -> tuple[int, int, int, Headers] | None:
        """Status, byte range [start, end) and headers of a file answer (the request's
        ``Range`` applied); None when 416 has been answered already."""
        headers = (cors or []) + [
            (b"content-type", content_type(name, default_type).encode()),
            (b"last-modified", _http_date(mtime)), (b"accept-ranges", b"bytes"),
        ]
        wanted = parse_range(_header(scope, b"range"), size)
        if wanted == "unsatisfiable":
            await self._respond(send, 416, headers + [(b"content-range", f"bytes */{size}".encode())])
            return None
        status, start, end = 200, 0, size
        if isinstance(wanted, tuple):
            status, start, end = 206, wanted[0], wanted[1] + 1
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        return status, start, end, headers

    async def _send_bytes(self, scope: Scope, send: Send, name: str, data: bytes, mtime: float,
                          default_type: str, cors: Headers | None) -> None:
        ranged = await self._ranged(scope, send, name, len(data), mtime, default_type, cors)
        if ranged is None:
            return
        status, start, end, headers = ranged
        headers.append((b"content-length", str(end - start).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD" or end == start:
            await send({"type": "http.response.body", "body": b""})
            return
        view = memoryview(data)
        for offset in range(start, end, CHUNK):
            last = offset + CHUNK >= end
            await send({"type": "http.response.body", "body": view[offset:min(offset + CHUNK, end)],
                        "more_body": not last})

    async def _send_disk_file(self, scope: Scope, send: Send, found: tuple[str, os.stat_result],
                              default_type: str, cors: Headers | None) -> None:
        real, st = found
        ranged = await self._ranged(scope, send, real, st.st_size, st.st_mtime, default_type,
                                    cors)
        if ranged is None:
            return
        status, start, end, headers = ranged
        try:
            f = await trio.open_file(real, "rb")
        except OSError:
            await self._error(scope, send, 404, "File not found", real, cors)
            return
        async with f:
            headers.append((b"content-length", str(end - start).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if scope["method"] == "HEAD" or end == start or not stat_module.S_ISREG(st.st_mode):
                await send({"type": "http.response.body", "body": b""})
                return
            await f.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = await f.read(min(CHUNK, remaining))
                if not chunk:  # the file shrank while we were sending: end short (size was sent)
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": remaining > 0})
            if remaining > 0:
                await send({"type": "http.response.body", "body": b""})

    # -- auth, CORS, errors -------------------------------------------------------------------
    async def _write_allowed(self, scope: Scope, send: Send, cors: Headers | None) -> bool:
        """Basic auth for a write, with the per-address backoff for wrong credentials;
        answers 401 / 429 itself and returns False when the write is refused."""
        if self.memfs_credentials is None:
            return True
        header = _header(scope, b"authorization") or ""
        if self.throttle is None or header.partition(" ")[0].lower() != "basic":
            ok = self._basic_ok(scope)  # no credentials offered: a challenge, not a guess
        else:
            loopback = "trio_core.loopback" in scope.get("extensions", {})
            endpoint = "loopback" if loopback else "public"
            client = (scope.get("client") or ("",))[0]
            try:
                async with self.throttle.attempt(f"{endpoint} {client}") as attempt:
                    ok = self._basic_ok(scope)
                    if ok:
                        attempt.succeeded()
                    else:
                        attempt.failed()  # this answer waits, longer for each failure
            except Throttled as exc:
                retry = str(max(1, int(exc.retry_after + 0.999))).encode()
                await self._error(scope, send, 429, "Too Many Requests", str(exc), cors,
                                  [(b"retry-after", retry)])
                return False
        if not ok:
            await self._error(scope, send, 401, "Unauthorized", "Unauthorized", cors,
                              [(b"www-authenticate", b"basic realm=Restricted")])
        return ok

    def _basic_ok(self, scope: Scope) -> bool:
        if self.memfs_credentials is None:
            return True
        header = _header(scope, b"authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        want_user, want_password = self.memfs_credentials
        user_ok = hmac.compare_digest(user.encode(), want_user.encode())
        password_ok = hmac.compare_digest(password.encode(), want_password.encode())
        return bool(sep) and user_ok and password_ok

    def _cors(self, scope: Scope) -> Headers | None:
        """CORS headers for a mount response (None: no Origin, or an origin not allowed)."""
        return self._cors_for(_header(scope, b"origin"))

    def _cors_for(self, origin: str | None) -> Headers | None:
        if not origin:
            return None
        if "*" in self.cors_origins:
            allow = "*"
        elif origin in self.cors_origins:
            allow = origin
        else:
            return None
        return [(b"access-control-allow-origin", allow.encode()),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", b"Content-Length"), (b"vary", b"Origin")]

    async def _preflight(self, send: Send, cors: Headers) -> None:
        extra: Headers = []
        if cors:
            extra = [(b"access-control-allow-methods", CORS_METHODS),
                     (b"access-control-allow-headers", CORS_HEADERS),
                     (b"access-control-max-age", b"86400")]
        await self._respond(send, 204, cors + extra)

    async def _error(self, scope: Scope, send: Send, status: int, message: str, detail: str,
                     cors: Headers | None, extra: Headers | None = None) -> None:
        headers = (cors or []) + (extra or [])
        if scope["method"] == "HEAD":
            # Core answers a failed HEAD with no content at all (no JSON Content-Type either):
            # the Restreamer UI parses any JSON-typed error as JSON, and an empty body breaks it.
            await self._respond(send, status, headers)
            return
        body = json.dumps({"code": status, "message": message, "details": [detail]},
                          separators=(",", ":")).encode() + b"\n"
        await self._respond(send, status, headers + [(b"content-type", JSON_CONTENT_TYPE_BYTES)],
                            body)

    @staticmethod
    async def _respond(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
        headers = headers + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
