"""Core v17's ``ClusterNode`` as built from a node's registration (cluster_routes.node_json)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from trio_core.cluster.cluster_routes import node_json


def test_live_and_dead_nodes() -> None:
    me: Any = SimpleNamespace(id="me", last_contact_ms=lambda: 12.5)
    doc = {"id": "n2", "name": "x", "address": "http://10.0.0.2:8080", "version": "0.1.0",
           "state": "leave", "started_at": time.time() - 100, "updated_at": time.time(),
           "resources": {"ncpu": 4, "cpu_used": 10.5, "memory_used_bytes": 5,
                         "memory_limit_bytes": 10, "is_throttling": False}, "processes": 3}
    live = node_json(me, "n2", doc)
    assert live["status"] == "leave" and live["uptime_seconds"] >= 99
    assert live["created_at"].endswith("Z") and live["core"]["address"] == doc["address"]
    assert live["resources"]["ncpu"] == 4.0 and live["processes"] == 3
    # Core v16's ClusterNode (core_client 1.1.1): address, id, last_update (int), state
    assert live["state"] == "leave" and isinstance(live["last_update"], int)
    dead = node_json(me, "n3", None)
    assert dead["status"] == "offline" and dead["error"] and dead["uptime_seconds"] == 0
    assert node_json(me, "me", doc)["last_contact_ms"] == 12.5
