"""trio_core.webrtc.subsystem: ICE addresses announced (public IP first, NAT 1:1 IPs after,
no duplicates) and the ``webrtc.max_*`` settings as admission limits."""

from __future__ import annotations

from trio_core.config.settings import load_config
from trio_core.webrtc.subsystem import admission_limits, advertised_ips


def test_advertised_ips_and_admission_limits() -> None:
    config = load_config(None, env={}).replace(**{
        "webrtc.public_ip": "203.0.113.1",
        "webrtc.nat_1_to_1_ips": ["198.51.100.2", "203.0.113.1", "198.51.100.3"],
        "webrtc.max_viewers": 7, "webrtc.max_viewers_per_process": 3,
        "webrtc.max_pending": 5, "webrtc.max_pending_per_process": 2,
        "webrtc.max_pending_per_client": 1,
    })
    assert advertised_ips(config) == ["203.0.113.1", "198.51.100.2", "198.51.100.3"]
    limits = admission_limits(config)
    assert (limits.max_viewers, limits.max_viewers_per_source, limits.max_pending,
            limits.max_pending_per_source, limits.max_pending_per_client) == (7, 3, 5, 2, 1)
    assert advertised_ips(load_config(None, env={})) == []
