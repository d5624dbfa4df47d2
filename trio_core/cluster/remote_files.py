"""memfs/disk files of processes that run on other nodes (``StorageHTTP.remote_files``).

A ``GET``/``HEAD`` on ``/memfs/…``, ``/…`` (disk) or ``/api/v3/fs/{mem,disk}/…`` that this
node cannot answer is asked of the other live nodes: first the node running the process whose
id the file name starts with (Restreamer names HLS files ``<process id>.m3u8``,
``<process id>_<n>.ts``), then the rest, each with ``X-Trio-Core-Cluster-Hop: 1`` (so the
asked node answers from its own storage only) and a 2 s deadline; the first 200 wins. Files
larger than :data:`MAX_BYTES` are not relayed. ``listing`` asks every other live node for its
``GET /api/v3/fs/{storage}?glob=`` (the caller's ``Authorization`` forwarded: the nodes share
``api.auth.jwt.secret`` when auth is on; a node that fails or is slower than 2 s is left
out) so a listing through any node shows the cluster's files. Cancellation: a cancelled request cancels the
request to the other node.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trio_core.cluster.node import ClusterNode

__all__ = ["MAX_BYTES", "RemoteFiles"]

MAX_BYTES = 64 * 1024 * 1024
TIMEOUT = 2.0


class RemoteFiles:
    """``await RemoteFiles(node)(storage, name)`` -> ``(data, mtime)`` or None."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def candidates(self, name: str) -> list[str]:
        """API addresses of the other live nodes, the likely owner first."""
        node = self.node
        base = name.lstrip("/").rsplit("/", 1)[-1]
        first: list[str] = []
        for pid in sorted(node.holders, key=len, reverse=True):
            if base.startswith(pid):
                holder = node.holders[pid][0]
                if holder != node.id:
                    first.append(holder)
                break
        rest = sorted(n for n in node.live_nodes if n != node.id and n not in first)
        return [str(node.live_nodes[n].get("address", "")) for n in first + rest
                if n in node.live_nodes]

    async def listing(self, storage: str, pattern: str,
                      authorization: str = "") -> list[tuple[str, int, float]]:
        """``(name, size, mtime)`` of the other live nodes' files matching ``pattern``."""
        import httpx
        node = self.node
        addresses = [str(doc.get("address", "")) for nid, doc in sorted(node.live_nodes.items())
                     if nid != node.id]
        headers = {"X-Trio-Core-Cluster-Hop": "1"}
        if authorization:
            headers["Authorization"] = authorization
        out: list[tuple[str, int, float]] = []

        async def one(client: httpx.AsyncClient, address: str) -> None:
            try:
                resp = await client.get(f"{address}/api/v3/fs/{storage}",
                                        params={"glob": pattern}, headers=headers)
                if resp.status_code == 200:
                    out.extend((str(f["name"]), int(f["size_bytes"]), float(f["last_modified"]))
                               for f in resp.json())
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass

        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            with trio.move_on_after(TIMEOUT + 0.5):
                async with trio.open_nursery() as nursery:
                    for address in addresses:
                        if address:
                            nursery.start_soon(one, client, address)
        return out

    async def __call__(self, storage: str, name: str) -> tuple[bytes, float] | None:
        import httpx
        path = ("/memfs" + name) if storage == "mem" else name
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for address in self.candidates(name):
                if not address:
                    continue
                with trio.move_on_after(TIMEOUT):
                    try:
                        resp = await client.get(address + path,
                                                headers={"X-Trio-Core-Cluster-Hop": "1"})
                    except httpx.HTTPError:
                        continue
                    if resp.status_code != 200 or len(resp.content) > MAX_BYTES:
                        continue
                    mtime = time.time()
                    if modified := resp.headers.get("Last-Modified"):
                        try:
                            mtime = parsedate_to_datetime(modified).timestamp()
                        except (TypeError, ValueError):
                            pass
                    return resp.content, mtime
        return None
