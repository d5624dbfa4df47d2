"""trio_core.config.jwt_secret: a generated JWT secret is made once, kept 0600, and never rewritten."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trio_core.config.jwt_secret import JWT_SECRET_FILE, persisted_jwt_secret


def test_secret_is_created_once_with_mode_0600_and_then_read_back(tmp_path: Path) -> None:
    db = tmp_path / "db"  # created on demand
    first = persisted_jwt_secret(str(db))
    path = db / JWT_SECRET_FILE
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mtime = path.stat().st_mtime_ns
    assert persisted_jwt_secret(str(db)) == first  # read, not rewritten
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in db.iterdir()] == [JWT_SECRET_FILE]  # no temp file left


def test_an_empty_file_is_replaced_and_umask_does_not_widen_the_mode(tmp_path: Path) -> None:
    (tmp_path / JWT_SECRET_FILE).write_text("")
    old = os.umask(0)
    try:
        secret = persisted_jwt_secret(str(tmp_path))
    finally:
        os.umask(old)
    assert secret and (tmp_path / JWT_SECRET_FILE).read_text().strip() == secret
    assert stat.S_IMODE((tmp_path / JWT_SECRET_FILE).stat().st_mode) == 0o600


def test_two_directories_get_different_secrets(tmp_path: Path) -> None:
    assert persisted_jwt_secret(str(tmp_path / "a")) != persisted_jwt_secret(str(tmp_path / "b"))
