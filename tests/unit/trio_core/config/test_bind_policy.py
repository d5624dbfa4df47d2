"""trio_core.config.bind_policy: binding a public address without auth is refused (check_bind)."""

from __future__ import annotations

import pytest

from trio_core.config.bind_policy import check_bind
from trio_core.config.settings import load_config
from trio_core.config.startup_error import PublicBindRefused

AUTH = {"api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "s3cret"}


def test_check_bind() -> None:
    base = load_config(None, env={})
    for ok in ("127.0.0.1:8080", "127.0.0.2:1", "[::1]:8080", "localhost:8080"):
        check_bind(base.replace(**{"api.address": ok}))
    for public in ("0.0.0.0:8080", ":8080", "[::]:8080", "192.0.2.1:80", "example.com:80"):
        cfg = base.replace(**{"api.address": public})
        with pytest.raises(PublicBindRefused, match="api.allow_public_bind"):
            check_bind(cfg)
        check_bind(cfg.replace(**{"api.allow_public_bind": True}))
        check_bind(cfg.replace(**AUTH))
