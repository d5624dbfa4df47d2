"""The cluster subsystem (``cluster.enable``): builds this node's :class:`ClusterNode` and
its routes, and runs it beside the supervisor.

:func:`cluster_node` is called by the composition root while it builds the services (the
supervisor then keeps no ``db.json`` of its own: the shared store in Redis is the truth and
``db.json`` its cache, written by the node); :func:`install_routes` registers the cluster-wide
process routes in place of the single-node ones, the node-local view under
``/api/v3/cluster/local/process``, ``/api/v3/cluster``, files of other nodes through the
storage mounts (:mod:`.remote_files`) and the WHEP redirect: a WHEP ``POST``
for a process another node runs answers **307** to that node's WHEP URL (query string, e.g.
``?token=``, kept; the ``Authorization`` header is repeated by clients on a 307) — or, with
``cluster.relay``, is answered here by the edge relay (:mod:`trio_core.cluster.relay`, run by
:class:`EdgeRelaySubsystem` after the WebRTC forwarder started).
``ClusterSubsystem.run`` is :meth:`ClusterNode.run` (ready once registered in Redis; a node
id clash fails the start; Redis unreachable is retried with a clear error, the server not
listening meanwhile). Cancellation: as :meth:`ClusterNode.run`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import trio

from trio_core.api.process_routes import process_blueprint
from trio_core.cluster.cluster_routes import cluster_blueprint
from trio_core.cluster.node import ClusterNode, ClusterSettings, SystemMetadataStore
from trio_core.cluster.process_routes import (
    LOCAL_PREFIX,
    cluster_process_blueprint,
    whep_location,
)
from trio_core.cluster.remote_files import RemoteFiles
from trio_core.config.startup_error import StartupError
from trio_core.web import Response, request

if TYPE_CHECKING:
    from trio_core.cluster.relay import EdgeRelay
    from trio_core.config.settings import Config
    from trio_core.engine.pid_records import PidRecords
    from trio_core.engine.store import Store
    from trio_core.engine.supervisor import Supervisor
    from trio_core.storage.mounts import StorageHTTP
    from trio_core.web import App

__all__ = ["ClusterSubsystem", "EdgeRelaySubsystem", "SystemMetadataStore", "cluster_node",
           "install_routes"]

_WHEP_POST = re.compile(r"^/api/v3/process/([^/]+)/whep$")
_WHEP_SESSION = re.compile(r"^/api/v3/process/([^/]+)/whep/([^/]+)$")


def cluster_node(config: Config, supervisor: Supervisor, *, instance_id: str, name: str = "",
                 cache: Store | None = None, pid_records: PidRecords | None = None,
                 system: SystemMetadataStore | None = None) -> ClusterNode:
    """This node's cluster member (nothing runs yet). StartupError when coredis is missing."""
    try:
        import coredis  # noqa: F401
    except ImportError:
        raise StartupError("cluster.enable needs the coredis package: "
                           "pip install 'trio-core[cluster]'") from None
    settings = ClusterSettings.from_config(config, instance_id, name)
    return ClusterNode(settings, supervisor, cache=cache, pid_records=pid_records, system=system)


def install_routes(app: App, node: ClusterNode, storage_http: StorageHTTP | None = None,
                   relay: EdgeRelay | None = None) -> None:
    """The cluster's routes on ``app`` (in place of the single-node process routes); with
    ``storage_http``, files other nodes have are served through this one; with ``relay``
    (``cluster.relay``) WHEP viewers of processes other nodes run are served here
    (:mod:`trio_core.cluster.relay`) instead of redirected."""
    if storage_http is not None:
        storage_http.remote_files = remote = RemoteFiles(node)
        storage_http.remote_lists = remote.listing
    app.register_blueprint(cluster_process_blueprint(node))
    app.register_blueprint(cluster_process_blueprint(node, name="cluster_process",
                                                     url_prefix="/api/v3/cluster/process"))
    app.register_blueprint(process_blueprint(node.supervisor), url_prefix=LOCAL_PREFIX,
                           name="process_local")
    app.register_blueprint(cluster_blueprint(node))

    @app.before_request
    async def whep_redirect() -> Response | None:
        if relay is not None and request.method in ("PATCH", "DELETE"):
            session = _WHEP_SESSION.match(request.path)
            if session is not None and relay.viewer(unquote(session.group(1)),
                                                    session.group(2)) is not None:
                return await relay.whep_session(request, unquote(session.group(1)),
                                                session.group(2))
            return None
        if request.method != "POST":
            return None
        match = _WHEP_POST.match(request.path)
        if match is None or match.group(1) in node.book.held:
            return None
        if relay is not None and relay.relays(unquote(match.group(1))):
            return await relay.whep_post(request, unquote(match.group(1)))
        location = whep_location(node, match.group(1), request.path,
                                 request.query_string.decode("latin-1"))
        if location is None:
            return None
        return Response("", status=307, headers={"Location": location})


class ClusterSubsystem:
    """Runs the node (see the module docstring)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await self.node.run(task_status=task_status)


class EdgeRelaySubsystem:
    """Runs the edge relay (``cluster.relay``); started after the WebRTC subsystem, so it
    ends (every upstream session and relay Source) before the forwarder does."""

    def __init__(self, relay: EdgeRelay) -> None:
        self.relay = relay

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await self.relay.run(task_status=task_status)
