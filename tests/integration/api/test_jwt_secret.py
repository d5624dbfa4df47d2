"""The JWT secret outlives a restart: generated once into ``<db.dir>/jwt-secret`` (0600) when none
is configured, so a login survives stopping and starting the real server; a configured secret
(env or config file) is used as it is and never written anywhere."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt
import pytest

from trio_core.config import v3_mapping as core_config

USER, PASSWORD = "admin", "pw-of-the-test"


def server_env(db_dir: Path, ffmpeg: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_")}
    env.update({
        "CORE_API_ADDRESS": "127.0.0.1:0",
        "CORE_API_AUTH_ENABLE": "true",
        "CORE_API_AUTH_USERNAME": USER,
        "CORE_API_AUTH_PASSWORD": PASSWORD,
        "CORE_DB_DIR": str(db_dir),
        "CORE_STORAGE_DISK_DIR": str(db_dir.parent / "data"),
        "CORE_FFMPEG_BINARY": ffmpeg,
        "CORE_DEMO_ENABLE": "false",
        "CORE_WEBRTC_ENABLE": "false",
    })
    env.update(extra)
    return env


@contextmanager
def real_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """``python -m trio_core`` with umask 0 (the secret file must be 0600 regardless); yields
    its base URL; SIGTERM at the end, which must exit 0."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                preexec_fn=lambda: os.umask(0))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
        assert "trio-core listening on " in line, (line, log.read_text())
        yield line.rsplit(" ", 1)[1].strip()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def login(base: str) -> tuple[str, str]:
    resp = httpx.post(base + "/api/login", json={"username": USER, "password": PASSWORD},
                      timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"], resp.json()["refresh_token"]


def processes_status(base: str, access: str) -> int:
    return httpx.get(base + "/api/v3/process", timeout=10,
                     headers={"Authorization": f"Bearer {access}"}).status_code


def refresh_status(base: str, refresh: str) -> int:
    return httpx.get(base + "/api/login/refresh", timeout=10,
                     headers={"Authorization": f"Bearer {refresh}"}).status_code


def test_generated_secret_survives_a_restart(tmp_path: Path, ffmpeg: str) -> None:
    db = tmp_path / "db"
    env = server_env(db, ffmpeg)
    with real_server(env, tmp_path / "server.log") as base:
        access, refresh = login(base)
        assert processes_status(base, access) == 200
    secret_file = db / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    # the tokens are signed with it (bound to the credentials as in Core)
    jwt.decode(access, f"{USER}{PASSWORD}{secret}", algorithms=["HS256"],
               options={"verify_iss": False})
    before = secret_file.stat()

    with real_server(env, tmp_path / "server.log") as base:
        assert processes_status(base, access) == 200
        assert refresh_status(base, refresh) == 200
        assert processes_status(base, "not-a-token") == 401
    after = secret_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert secret_file.read_text().strip() == secret


def test_configured_secret_is_used_and_never_written(tmp_path: Path, ffmpeg: str) -> None:
    db = tmp_path / "db"
    db.mkdir()
    kept = db / "jwt-secret"
    kept.write_text("an-earlier-generated-secret\n")
    kept.chmod(0o600)
    before = kept.stat()
    env = server_env(db, ffmpeg, CORE_API_AUTH_JWT_SECRET="configured-by-env")
    with real_server(env, tmp_path / "server.log") as base:
        access, _ = login(base)
    jwt.decode(access, f"{USER}{PASSWORD}configured-by-env", algorithms=["HS256"],
               options={"verify_iss": False})
    after = kept.stat()
    assert (after.st_mtime_ns, kept.read_text()) == (before.st_mtime_ns,
                                                      "an-earlier-generated-secret\n")

    # from a config file: used as it is; neither the file nor db.dir gets a secret written
    other_db = tmp_path / "db2"
    config = tmp_path / "config.json"
    text = json.dumps({"db": {"dir": str(other_db)},
                       "api": {"auth": {"jwt": {"secret": "configured-in-file"}}}})
    config.write_text(text)
    loaded = core_config.load(str(config), env={})
    assert loaded["api.auth.jwt.secret"] == "configured-in-file"
    assert config.read_text() == text
    assert not (other_db / "jwt-secret").exists()

    # an empty value counts as "not configured": the generated one is kept and reused
    first = core_config.load(None, env={"CORE_DB_DIR": str(other_db),
                                        "CORE_API_AUTH_JWT_SECRET": ""})
    second = core_config.load(None, env={"CORE_DB_DIR": str(other_db)})
    assert first["api.auth.jwt.secret"] == second["api.auth.jwt.secret"] == (
        other_db / "jwt-secret").read_text().strip()


def test_unwritable_db_dir_is_a_setting_error(tmp_path: Path) -> None:
    """A db dir that cannot hold the secret refuses to start with a message naming db.dir
    (the server needs it writable for db.json anyway)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(core_config.SettingError, match="JWT secret") as info:
        core_config.load(None, env={"CORE_DB_DIR": str(blocker / "db")})
    assert info.value.key == "db.dir"
