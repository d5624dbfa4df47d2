"""``cluster.*`` settings (issue 20): off by default, checked only when enabled."""

from __future__ import annotations

import pytest

from trio_core.config.settings import SettingError, load_config


def test_defaults_and_checks() -> None:
    config = load_config(None, env={})
    assert config["cluster.enable"] is False and config["cluster.lease_seconds"] == 10
    assert config["cluster.redis_url"] == "redis://127.0.0.1:6379/0"
    ok = {"CORE_CLUSTER_ENABLE": "true", "CORE_API_ADDRESS": "127.0.0.1:8080"}
    assert load_config(None, env=ok)["cluster.enable"] is True
    for extra, name, words in (
        ({"CORE_CLUSTER_REDIS_URL": "http://x"}, "cluster.redis_url", "redis://"),
        ({"CORE_CLUSTER_LEASE_SECONDS": "1"}, "cluster.lease_seconds", ">= 2"),
        ({"CORE_CLUSTER_NODE_ID": "a b"}, "cluster.node_id", "are allowed"),
        ({"CORE_CLUSTER_ADDRESS": "10.0.0.1:8080"}, "cluster.address", "http://"),
        ({"CORE_API_ADDRESS": ":8080"}, "cluster.address", "every interface"),
        ({"CORE_API_ADDRESS": "127.0.0.1:0"}, "cluster.address", "port 0"),
    ):
        with pytest.raises(SettingError, match=words) as info:
            load_config(None, env={**ok, **extra})
        assert info.value.key == name
    # off: nothing is checked
    assert load_config(None, env={"CORE_CLUSTER_LEASE_SECONDS": "1"})["cluster.lease_seconds"] == 1


def test_headroom_settings() -> None:
    config = load_config(None, env={})
    assert config["cluster.max_cpu_usage"] == 90 and config["cluster.max_memory_usage"] == 90
    assert load_config(None, env={"CORE_CLUSTER_MAX_CPU_USAGE": "0"})["cluster.max_cpu_usage"] == 0
    with pytest.raises(SettingError, match="0..100"):
        load_config(None, env={"CORE_CLUSTER_MAX_MEMORY_USAGE": "101"})
