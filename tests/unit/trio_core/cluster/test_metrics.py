"""The cluster's Prometheus collector reads the node's counters (trio_core/cluster/metrics.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from trio_core.cluster.metrics import ClusterMetrics


def test_exposition() -> None:
    node: Any = SimpleNamespace(id="n1", live_nodes={"n1": {}, "n2": {}}, failovers=3, moves=2,
                                fenced=1, leases_held=lambda: 7)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterMetrics(node))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    for line in ('cluster_nodes{node="n1"} 2.0', 'cluster_leases_held{node="n1"} 7.0',
                 'cluster_failovers_total{node="n1"} 3.0', 'cluster_moves_total{node="n1"} 2.0',
                 'cluster_self_fenced_total{node="n1"} 1.0'):
        assert line in text, text
