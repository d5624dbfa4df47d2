"""The cluster's Prometheus metrics (``metrics.enable_prometheus``), read from this node's
:class:`~trio_core.cluster.node.ClusterNode` at scrape time (no I/O):

* ``cluster_nodes`` (gauge): live nodes the last reconcile saw;
* ``cluster_leases_held`` (gauge): process leases this node holds;
* ``cluster_failovers_total``: processes this node took over from a node that stopped renewing;
* ``cluster_moves_total``: processes this node handed over on purpose (rebalance, drain, pin);
* ``cluster_self_fenced_total``: processes this node stopped because it could not renew;
* ``cluster_relay_sessions`` (gauge): upstream sessions this node holds as an edge
  (``cluster.relay``: one per relayed process; 0 without the relay).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from trio_core.cluster.node import ClusterNode
    from trio_core.cluster.relay import EdgeRelay

__all__ = ["ClusterMetrics"]


class ClusterMetrics:
    """A prometheus_client collector over one node."""

    def __init__(self, node: ClusterNode, relay: EdgeRelay | None = None) -> None:
        self.node = node
        self.relay = relay

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        node = self.node
        labels = ["node"]
        for family, name, doc, value in (
            (GaugeMetricFamily, "cluster_nodes", "Live nodes of the cluster", len(node.live_nodes)),
            (GaugeMetricFamily, "cluster_leases_held", "Process leases this node holds",
             node.leases_held()),
            (CounterMetricFamily, "cluster_failovers", "Processes taken over from a dead or "
             "cut-off node", node.failovers),
            (CounterMetricFamily, "cluster_moves", "Processes handed over on purpose",
             node.moves),
            (CounterMetricFamily, "cluster_self_fenced", "Processes stopped because the lease "
             "could not be renewed", node.fenced),
            (GaugeMetricFamily, "cluster_relay_sessions", "Upstream sessions this node holds "
             "as an edge relay", self.relay.sessions if self.relay is not None else 0),
        ):
            metric = family(name, doc, labels=labels)
            metric.add_metric([node.id], value)
            yield metric
