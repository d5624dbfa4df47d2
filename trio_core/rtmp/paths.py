"""Stream paths, tokens and the ``{rtmp}`` placeholder as datarhei Core computes them. Pure.

A client's ``connect`` names an app (``live``) and its ``publish``/``play`` a stream name
(``x``, maybe ``x?token=T``). Core (joy4) joins them into a URL path ``/live/x`` (empty
segments dropped) whose query is parsed; with ``rtmp.token`` set, the token is the ``token``
query parameter or else the last path element, which is then removed from the path
(``/live/x/T`` -> ``/live/x``). Publishing requires the path to start with ``rtmp.app``;
playing does not (as Core).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from trio_core.util.addresses import loopback_for, url_host

__all__ = ["StreamRequest", "placeholder_template", "resolve_request"]


@dataclass(frozen=True)
class StreamRequest:
    path: str  # the registry key ("/live/x"), token removed
    token: str  # "" when none was given
    url_path: str  # the path as requested (token still in it when it was a path element)


def resolve_request(app: str, name: str, *, token_required: bool) -> StreamRequest:
    """The stream a publish/play refers to (see the module docstring)."""
    segments = [s for s in f"{app}/{name}".split("/") if s]
    joined = "/" + "/".join(segments)
    raw_path, _, query = joined.partition("?")
    path = urllib.parse.unquote(raw_path)
    if not token_required:
        return StreamRequest(path, "", path)
    token = urllib.parse.parse_qs(query).get("token", [""])[0]
    if token:
        return StreamRequest(path, token, path)
    head, _, last = raw_path.rpartition("/")
    return StreamRequest(urllib.parse.unquote(head), urllib.parse.unquote(last), path)


def placeholder_template(host: str, port: int, app: str, token: str) -> str:
    """The value of ``{rtmp}``: ``rtmp://host:port[app]/{name}[?token=T]`` (Core's
    ``app/api/api.go``); a wildcard host becomes loopback
    (:func:`trio_core.util.addresses.loopback_for`)."""
    template = f"rtmp://{url_host(loopback_for(host))}:{port}"
    if app != "/":
        template += app
    template += "/{name}"
    if token:
        template += "?token=" + token
    return template
