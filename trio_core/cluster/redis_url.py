"""``cluster.redis_url``: which Redis the cluster uses, and a coredis client for it.

Accepted (coredis's own URL schemes, plus Sentinel, which coredis offers as a class only):

* ``redis://[user:pass@]host:port/db`` and ``rediss://…`` (TLS), ``unix:///path/redis.sock``
  — handed to ``coredis.Redis.from_url``;
* ``redis+sentinel://[user:pass@]host:port[,host:port…]/service[/db]`` (``rediss+sentinel``
  for TLS to the primary) — the primary of ``service`` as the Sentinels name it, through
  ``coredis.Sentinel(...).primary_for(service)``: after a failover the next connection goes to
  the new primary. The credentials are the primary's; the Sentinels are asked without any.

:func:`parse` is pure (a :class:`SentinelTarget`, or None for a plain URL; ValueError naming
the problem); :func:`open_client` is an async context manager yielding a connected-on-demand
``coredis.Redis`` and closing it (and the Sentinel client) on exit, also when cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["SCHEMES", "SentinelTarget", "open_client", "parse", "redacted"]

SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse(url: str) -> SentinelTarget | None:
    """None for a URL coredis reads itself; the Sentinel target of a ``…+sentinel://`` URL.
    ValueError for anything else, naming what is wrong."""
    if not url.startswith(SCHEMES):
        raise ValueError("expected redis://, rediss://, unix://, redis+sentinel:// or "
                         f"rediss+sentinel://, got {url!r}")
    if "+sentinel://" not in url:
        return None
    scheme, _, rest = url.partition("://")
    auth, _, hosts_path = rest.rpartition("@")
    hosts, _, path = hosts_path.partition("/")
    sentinels = []
    for part in hosts.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep:
            host, port = part.strip(), "26379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad Sentinel address {part!r} in {redacted(url)!r} "
                             "(expected host:port)")
        sentinels.append((host, int(port)))
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError(f"expected /<service>[/<db>] after the Sentinels in {redacted(url)!r}")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError(f"the database must be a number, got {segments[1]!r}")
    username = password = None
    if auth:
        user, sep, pwd = auth.partition(":")
        username, password = (unquote(user) or None, unquote(pwd)) if sep else (None, unquote(user))
    return SentinelTarget(sentinels=tuple(sentinels), service=unquote(segments[0]),
                          db=int(segments[1]) if len(segments) == 2 else 0,
                          username=username, password=password,
                          tls=scheme == "rediss+sentinel")


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and the API)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


@asynccontextmanager
async def open_client(url: str, **options: Any) -> AsyncIterator[Any]:
    """A ``coredis.Redis`` for ``url`` (``options``: coredis connection options, e.g.
    ``decode_responses``, timeouts, ``retry_policy``), closed on exit."""
    import coredis

    target = parse(url)
    if target is None:
        async with coredis.Redis.from_url(url, **options) as client:
            yield client
        return
    import ssl

    from coredis.connection import TCPLocation

    # the Sentinel client takes the retry policy and decode_responses for itself and the
    # primary; the timeouts go to both; the credentials, db and TLS to the primary only
    shared = {k: v for k, v in options.items() if k in ("retry_policy", "decode_responses")}
    primary = {k: v for k, v in options.items() if k not in shared}
    sentinel_options = {k: v for k, v in primary.items()
                        if k in ("stream_timeout", "connect_timeout")}
    primary["db"] = target.db
    if target.username is not None:
        primary["username"] = target.username
    if target.password is not None:
        primary["password"] = target.password
    if target.tls:
        primary["ssl_context"] = ssl.create_default_context()
    locations = [TCPLocation(host, port) for host, port in target.sentinels]
    async with coredis.Sentinel(locations, sentinel_kwargs=sentinel_options,
                                **shared) as sentinel:
        async with sentinel.primary_for(target.service, **primary) as client:
            yield client
