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
