"""Settings: defaults, JSON file, env overrides, errors naming the key, --help-config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trio_core.config.settings import (
    SETTINGS,
    SettingError,
    help_config,
    load_config,
)
from trio_core.util.addresses import is_loopback_host, parse_address


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_defaults() -> None:
    cfg = load_config(None, env={})
    assert cfg["api.address"] == "127.0.0.1:8080"
    assert (cfg.api_host, cfg.api_port) == ("127.0.0.1", 8080)
    assert cfg.api_auth_enable is False
    assert cfg["db.dir"] == "./config"
    assert cfg["storage.disk.dir"] == "./data"
    assert cfg["ffmpeg.binary"] == ""
    assert cfg["ffmpeg.log.max_lines"] == 50
    assert cfg["ffmpeg.log.max_history"] == 3
    assert cfg["webrtc.enable"] is True
    assert cfg["webrtc.nat_1_to_1_ips"] == []
    assert cfg["webrtc.udp_mux_port"] == 0
    assert cfg["webrtc.bind_address"] == "127.0.0.1"
    assert cfg["demo.enable"] is True  # no config file
    assert cfg["log.level"] == "info"
    assert len(cfg["api.auth.jwt.secret"]) >= 32  # random when empty
    assert load_config(None, env={})["api.auth.jwt.secret"] != cfg["api.auth.jwt.secret"]
    assert all(src == "default" for src in cfg.sources.values())


def test_every_setting_has_env_and_description() -> None:
    names = {s.name for s in SETTINGS}
    for required in ("api.address", "api.auth.enable", "api.auth.username", "api.auth.password",
                     "api.auth.jwt.secret", "api.allow_public_bind", "db.dir", "storage.disk.dir",
                     "ffmpeg.binary", "ffmpeg.max_processes", "ffmpeg.log.max_lines",
                     "ffmpeg.log.max_history", "webrtc.enable", "webrtc.public_ip",
                     "webrtc.nat_1_to_1_ips", "webrtc.udp_mux_port", "webrtc.bind_address",
                     "demo.enable", "log.level"):
        assert required in names
    for s in SETTINGS:
        assert s.env == "CORE_" + s.name.upper().replace(".", "_")
        assert s.description


def test_file_then_env(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", {
        "version": 3,
        "api": {"address": "127.0.0.1:9000", "auth": {"enable": True, "username": "u",
                                                      "password": "p"}},
        "db": {"dir": "/tmp/x"},
        "webrtc": {"nat_1_to_1_ips": ["192.0.2.1"], "udp_mux_port": 5000},
    })
    cfg = load_config(path, env={})
    assert cfg["api.address"] == "127.0.0.1:9000"
    assert cfg["api.auth.enable"] is True
    assert cfg["db.dir"] == "/tmp/x"
    assert cfg["webrtc.nat_1_to_1_ips"] == ["192.0.2.1"]
    assert cfg["demo.enable"] is False  # a config file was given
    assert cfg.sources["db.dir"] == "file"

    env = {"CORE_API_ADDRESS": "127.0.0.2:9001", "CORE_WEBRTC_NAT_1_TO_1_IPS": "192.0.2.7  2001:db8::1",
           "CORE_DEMO_ENABLE": "yes", "CORE_FFMPEG_LOG_MAX_LINES": "7"}
    cfg = load_config(path, env=env)
    assert cfg["api.address"] == "127.0.0.2:9001"
    assert cfg.sources["api.address"] == "env:CORE_API_ADDRESS"
    assert cfg["webrtc.nat_1_to_1_ips"] == ["192.0.2.7", "2001:db8::1"]
    assert cfg["demo.enable"] is True
    assert cfg["ffmpeg.log.max_lines"] == 7
    assert cfg["db.dir"] == "/tmp/x"


def test_configfile_env_and_alt_env(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", {"log": {"level": "debug"}})
    cfg = load_config(None, env={"CORE_CONFIGFILE": path, "CORE_ADDRESS": "127.0.0.1:1234"})
    assert cfg.config_file == path
    assert cfg["log.level"] == "debug"
    assert cfg["api.address"] == "127.0.0.1:1234"


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"CORE_API_ADDRESS": "127.0.0.1:70000"}, "api.address", "port"),
        ({"CORE_API_ADDRESS": "127.0.0.1"}, "api.address", "host:port"),
        ({"CORE_API_AUTH_ENABLE": "maybe"}, "api.auth.enable", "boolean"),
        ({"CORE_FFMPEG_MAX_PROCESSES": "many"}, "ffmpeg.max_processes", "integer"),
        ({"CORE_FFMPEG_LOG_MAX_LINES": "-1"}, "ffmpeg.log.max_lines", ">= 0"),
        ({"CORE_WEBRTC_PUBLIC_IP": "1.2.3.999"}, "webrtc.public_ip", "IP"),
        ({"CORE_WEBRTC_NAT_1_TO_1_IPS": "192.0.2.1 nope"}, "webrtc.nat_1_to_1_ips", "IP"),
        ({"CORE_WEBRTC_UDP_MUX_PORT": "65536"}, "webrtc.udp_mux_port", "port"),
        ({"CORE_WEBRTC_BIND_ADDRESS": "localhost"}, "webrtc.bind_address", "IP"),
        ({"CORE_LOG_LEVEL": "chatty"}, "log.level", "debug"),
    ],
)
def test_bad_env_value_names_key_and_var(env: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(SettingError) as info:
        load_config(None, env=env)
    err = info.value
    assert err.key == key
    assert err.env == next(iter(env))
    assert key in str(err) and err.env in str(err)
    assert fragment in str(err)


def test_bad_file_values(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", {"webrtc": {"udp_mux_port": "x"}})
    with pytest.raises(SettingError) as info:
        load_config(path, env={})
    assert info.value.key == "webrtc.udp_mux_port" and info.value.env is None
    assert path in str(info.value)

    path = write(tmp_path / "c.json", {"api": {"adress": "127.0.0.1:1"}})
    with pytest.raises(SettingError, match="api.adress"):
        load_config(path, env={})

    path = write(tmp_path / "c.json", {"ffmpeg": {"max_processes": True}})
    with pytest.raises(SettingError, match="ffmpeg.max_processes"):
        load_config(path, env={})

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SettingError, match="invalid JSON"):
        load_config(str(tmp_path / "broken.json"), env={})

    with pytest.raises(SettingError, match="cannot read"):
        load_config(str(tmp_path / "missing.json"), env={})


def test_auth_needs_credentials() -> None:
    with pytest.raises(SettingError) as info:
        load_config(None, env={"CORE_API_AUTH_ENABLE": "true"})
    assert info.value.key == "api.auth.username"
    cfg = load_config(None, env={"CORE_API_AUTH_ENABLE": "true", "CORE_API_AUTH_USERNAME": "a",
                                 "CORE_API_AUTH_PASSWORD": "b"})
    assert cfg.api_auth_enable is True


def test_addresses_and_loopback() -> None:
    assert parse_address(":8080") == ("", 8080)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address("localhost:0") == ("localhost", 0)
    for bad in ("::1:80", "1.2.3.4:", "1.2.3.4:x", "bad_host:80", "999.1.1.1:80"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.5.0.1")
    assert is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("") and not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("192.0.2.1") and not is_loopback_host("example.com")


def test_replace_validates() -> None:
    cfg = load_config(None, env={})
    cfg2 = cfg.replace(**{"api.address": "127.0.0.1:0", "db.dir": "/tmp/y"})
    assert cfg2.api_port == 0 and cfg2.db_dir == "/tmp/y" and cfg.api_port == 8080
    with pytest.raises(SettingError, match="api.address"):
        cfg.replace(**{"api.address": "nope"})


def test_help_config_lists_everything() -> None:
    text = help_config()
    for s in SETTINGS:
        assert s.name in text and s.env in text
    out = subprocess.run(
        [sys.executable, "-m", "trio_core", "--help-config"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    for s in SETTINGS:
        assert s.name in out and s.env in out and s.description in out
    assert '"127.0.0.1:8080"' in out


@pytest.mark.parametrize(("given", "level"), [("warn", "warning"), ("WARN", "warning"),
                                              ("warning", "warning"), ("silent", "silent"),
                                              ("error", "error"), ("debug", "debug")])
def test_log_level_takes_cores_names(given: str, level: str) -> None:
    """Core's ``log.level`` values (silent, error, warn, info, debug) are accepted."""
    assert load_config(None, env={"CORE_LOG_LEVEL": given})["log.level"] == level
