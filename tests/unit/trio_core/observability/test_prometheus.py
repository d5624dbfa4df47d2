"""trio_core.observability.prometheus + sources: monitor values exposed under Core's
Prometheus names with the ``core`` label; only Core's metrics are exposed."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from trio_core.observability.metric_sources import UptimeSource
from trio_core.observability.monitor import Monitor
from trio_core.observability.prometheus import build_registry, exposition


def test_uptime_is_exposed_with_cores_name_and_label() -> None:
    monitor = Monitor()
    monitor.register(UptimeSource(time.time() - 42))
    body, content_type = exposition(build_registry(monitor, "core-id", None, list))
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = families["uptime_seconds"].samples
    assert sample.labels == {"core": "core-id"}
    assert 42 <= sample.value <= 44
    assert families["uptime_seconds"].documentation == "Number of seconds the core is up"
    assert not any(name.startswith("webrtc") for name in families)  # no viewers given


def test_the_sender_pools_ring_drops_are_counted_per_worker(monkeypatch) -> None:
    from rtp import sender_pool

    monitor = Monitor()
    body, _ = exposition(build_registry(monitor, "core-id", None, list))
    assert b"webrtc_fanout" not in body  # no pool running: no series
    if not sender_pool.NATIVE:
        return
    engine = sender_pool.acquire(2)
    try:
        body, _ = exposition(build_registry(monitor, "core-id", None, list))
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert [s.value for s in families["webrtc_fanout_workers"].samples] == [2]
        drops = families["webrtc_fanout_ring_drops"]
        assert drops.type == "counter"
        assert {s.labels["worker"]: s.value for s in drops.samples
                if s.name.endswith("_total")} == {"0": 0, "1": 0}

        class Full:  # what a full ring leaves in the engine's stats (tests/unit/rtp/test_fanout.py
            def stats(self) -> list[dict[str, int]]:  # fills a real one)
                return [dict(w, ring_drops=7 * i) for i, w in enumerate(engine.stats())]

        monkeypatch.setattr(sender_pool, "current", lambda: Full())
        body, _ = exposition(build_registry(monitor, "core-id", None, list))
        assert b'webrtc_fanout_ring_drops_total{worker="1"} 7.0' in body
    finally:
        sender_pool.release(engine)
