"""trio_core.http.auth: tokens are bound to kind, credentials and secret; disabled passes all."""

from __future__ import annotations

import jwt
import pytest

from trio_core.http.auth import ISSUER, LOCAL_VALIDATOR, Authenticator, unauthorized


def test_tokens_verify_only_for_their_kind_and_key() -> None:
    auth = Authenticator(enabled=True, username="admin", password="pw", secret="s" * 32)
    access, refresh = auth.issue("admin", "access"), auth.issue("admin", "refresh")
    assert auth.verify(access) == "admin" and auth.verify(access, "refresh") is None
    assert auth.verify(refresh, "refresh") == "admin" and auth.verify(refresh) is None
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["exp"] - claims["iat"] == 600
    other_password = Authenticator(enabled=True, username="admin", password="pw2", secret="s" * 32)
    assert other_password.verify(access) is None  # tokens die with the credentials
    assert auth.verify("not.a.token") is None


def test_credentials_and_validators() -> None:
    auth = Authenticator(enabled=True, username="admin", password="pw", secret="s" * 32)
    assert auth.check_credentials("admin", "pw")
    assert not auth.check_credentials("admin", "wrong") and not auth.check_credentials("x", "pw")
    assert auth.about_auths == [LOCAL_VALIDATOR]
    off = Authenticator(enabled=False)
    assert off.about_auths == [] and not off.check_credentials("", "")
    with pytest.raises(ValueError):
        Authenticator(enabled=True, username="admin")
    assert unauthorized().status == 401
