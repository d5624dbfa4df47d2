"""The JWT signing secret when none is configured: generated once, kept in ``<db.dir>/jwt-secret``.

datarhei Core writes the secret it generates into its config file, so tokens survive a restart.
trio-core may run without a config file (env only, as in the container image) and must not
rewrite a file the operator owns, so the generated secret lives next to the process database
(``db.dir`` is the server's own, writable state directory; ``instance.json`` is kept there the
same way). The file holds the secret as text, mode 0600, and is only ever created, never
rewritten: a configured ``api.auth.jwt.secret`` (file or ``CORE_API_AUTH_JWT_SECRET``) wins and
leaves it alone. Creation is atomic (temp file + ``link``), so two servers starting on one
db dir agree on one secret.

Synchronous file I/O (a tiny file, read once per start or reload).
"""

from __future__ import annotations

import os
import secrets

JWT_SECRET_FILE = "jwt-secret"


def persisted_jwt_secret(db_dir: str) -> str:
    """The secret in ``<db_dir>/jwt-secret``; created (random, mode 0600) when missing or empty.

    Raises OSError when the file exists but cannot be read, or must be created and cannot be.
    """
    path = os.path.join(db_dir, JWT_SECRET_FILE)
    for _ in range(3):
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.read().strip()
        except FileNotFoundError:
            pass
        else:
            if secret:
                return secret
            os.unlink(path)  # empty (an interrupted write of an old version): make a new one
        os.makedirs(db_dir, exist_ok=True)
        secret = secrets.token_urlsafe(32)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secret.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails when another server created it meanwhile: read theirs
        except FileExistsError:
            os.unlink(tmp)
            continue
        except OSError:  # a filesystem without hard links: plain atomic rename
            os.replace(tmp, path)
            return secret
        os.unlink(tmp)
        return secret
    raise OSError(f"{path}: cannot create the JWT secret file")
