"""trio_core.cluster.relay: which WHEP offers the edge relay answers (processes another live
node holds), the relay Source's id, and the ``cluster_relay_sessions`` gauge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from trio_core.cluster.metrics import ClusterMetrics
from trio_core.cluster.relay import EdgeRelay, RelayEntry, source_id


def make_node() -> Any:
    return SimpleNamespace(
        id="n1", holders={"a": ("n2", 4), "b": ("n1", 1), "c": ("gone", 2)},
        live_nodes={"n1": {"address": "http://n1"}, "n2": {"address": "http://n2:8080"}},
        book=SimpleNamespace(held={"b": object()}), _records_cache={},
        failovers=0, moves=0, fenced=0, leases_held=lambda: 1)


def test_owner_and_what_is_relayed() -> None:
    relay = EdgeRelay(make_node(), forwarder=None, auth=None)  # type: ignore[arg-type]
    assert relay.owner("a") == ("n2", "http://n2:8080")
    assert relay.relays("a")
    assert not relay.relays("b")  # this node runs it
    assert not relay.relays("c")  # its holder is not a live node: nobody to pull from
    assert not relay.relays("unknown")
    assert source_id("a") == "relay:a"


def test_relay_sessions_gauge() -> None:
    node = make_node()
    relay = EdgeRelay(node, forwarder=None, auth=None)  # type: ignore[arg-type]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterMetrics(node, relay))  # type: ignore[arg-type]
    assert 'cluster_relay_sessions{node="n1"} 0.0' in generate_latest(registry).decode()
    relay.entries["a"] = RelayEntry("a", {}, upstream=SimpleNamespace(closed=False))  # type: ignore[arg-type]
    relay.entries["x"] = RelayEntry("x", {}, upstream=SimpleNamespace(closed=True))  # type: ignore[arg-type]
    assert 'cluster_relay_sessions{node="n1"} 1.0' in generate_latest(registry).decode()
