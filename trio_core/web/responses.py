"""Ready-made responses: a redirect, and a file from a directory.

:func:`send_from_directory` reads the file in a worker thread (cancellable: an abandoned read
finishes in the background, its result dropped) and refuses a name that leaves the directory
or names no file with werkzeug's ``NotFound`` (404). Its type comes from :mod:`mimetypes`.
"""

from __future__ import annotations

import html
import mimetypes
import os

import trio
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from trio_core.web.wrappers import Response

__all__ = ["redirect", "send_from_directory"]


def redirect(location: str, code: int = 302) -> Response:
    """A redirect to ``location`` with a short HTML body (as werkzeug's)."""
    escaped = html.escape(location)
    body = ('<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n'
            '<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target '
            f'URL: <a href="{escaped}">{escaped}</a>. If not, click the link.\n')
    return Response(body, code, {"Location": location})


async def send_from_directory(directory: str | os.PathLike[str], filename: str) -> Response:
    """The file ``filename`` inside ``directory`` (404 when outside it or missing)."""
    path = safe_join(os.fspath(directory), filename)
    if path is None or not os.path.isfile(path):
        raise NotFound()
    data = await trio.to_thread.run_sync(_read, path, abandon_on_cancel=True)
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Response(data, mimetype=kind)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
