"""API authentication: JWT login (datarhei style) and the ``/api/v3`` guard.

When ``enabled``, ``POST /api/login`` with ``{"username", "password"}`` returns
``{"access_token", "refresh_token"}`` (HS256, claims ``iss="trio-core"``, ``sub``, ``usefor``
``"access"|"refresh"``, ``iat``, ``exp``, ``jti``); ``GET /api/login/refresh`` with
``Authorization: Bearer <refresh>`` returns a new ``{"access_token"}``. Every route under
``/api/v3`` then needs ``Authorization: Bearer <access>`` — otherwise 401
``{"code":401,"message":"Unauthorized","details":["Missing or invalid JWT token"]}``.

Extension points (for e.g. per-process WHEP tokens):

* ``@auth.require_auth(*alternatives)`` on a view replaces the default guard for that view:
  the request passes with a valid access token *or* when any ``alternative(request)``
  (sync or async, returns bool) accepts it. Views decorated this way may live under
  ``/api/v3`` and be reachable with their own credentials only.
* ``@auth.public`` marks a view that needs no credentials at all.
* Views under ``/api/v3`` without either decorator get the default guard (bearer only),
  so a new blueprint is protected by default.

Login failures sleep ``login_delay`` seconds (brute-force damping) — a cancellable sleep.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import jwt
import trio
from quart import Blueprint, Quart, Request, Response, current_app, request

from .errors import ApiError, json_response, read_json

ISSUER = "trio-core"
AUTH_ATTR = "_trio_core_auth"  # set on view functions: "public" or a tuple of alternatives

Alternative = Callable[[Request], bool | Awaitable[bool]]
F = TypeVar("F", bound=Callable[..., Any])


def unauthorized(details: str = "Missing or invalid JWT token") -> ApiError:
    """The 401 error the guard answers with."""
    return ApiError(401, "Unauthorized", details, headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    """Holds the credentials and signs/verifies tokens. Disabled = everything passes."""

    def __init__(
        self, *, enabled: bool, username: str = "", password: str = "", secret: str = "",
        access_ttl: float = 600.0, refresh_ttl: float = 86400.0, login_delay: float = 1.0,
    ) -> None:
        if enabled and not (username and password):
            raise ValueError("auth needs a username and a password")
        self.enabled = enabled
        self.username = username
        self.password = password
        # like datarhei: tokens are bound to the credentials as well as to the secret
        self._key = f"{username}{password}{secret}".encode()
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.login_delay = login_delay

    # -- tokens -------------------------------------------------------------------------------
    def issue(self, subject: str, usefor: str) -> str:
        """A signed token for ``subject``; ``usefor`` is ``"access"`` or ``"refresh"``."""
        now = int(time.time())
        ttl = self.access_ttl if usefor == "access" else self.refresh_ttl
        claims = {
            "iss": ISSUER, "sub": subject, "usefor": usefor, "iat": now,
            "exp": now + int(ttl), "exi": int(ttl), "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, usefor: str = "access") -> str | None:
        """The subject of a valid, unexpired token of kind ``usefor``; None otherwise."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("usefor") != usefor:
            return None
        return str(claims["sub"])

    def check_credentials(self, username: str, password: str) -> bool:
        """Constant-time comparison of the configured credentials."""
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        pass_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return self.enabled and user_ok and pass_ok

    def bearer_subject(self, req: Request, usefor: str = "access") -> str | None:
        """The subject of the request's ``Authorization: Bearer`` token (None if absent/bad)."""
        header = req.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.verify(token.strip(), usefor)

    # -- guards -------------------------------------------------------------------------------
    async def authorize(self, req: Request, alternatives: tuple[Alternative, ...] = ()) -> bool:
        """True when auth is off, the bearer token is valid, or an alternative accepts."""
        if not self.enabled or self.bearer_subject(req) is not None:
            return True
        for alternative in alternatives:
            result = alternative(req)
            if inspect.isawaitable(result):
                result = await result
            if result:
                return True
        return False

    def require_auth(self, *alternatives: Alternative) -> Callable[[F], F]:
        """Decorator: the view needs a valid access token or one of ``alternatives``."""

        def decorate(view: F) -> F:
            @functools.wraps(view)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not await self.authorize(request, alternatives):
                    raise unauthorized()
                return await current_app.ensure_async(view)(*args, **kwargs)

            setattr(wrapper, AUTH_ATTR, alternatives)
            return wrapper  # type: ignore[return-value]

        return decorate

    @staticmethod
    def public(view: F) -> F:
        """Decorator: the view needs no credentials even under ``/api/v3``."""
        setattr(view, AUTH_ATTR, "public")
        return view

    async def _guard(self) -> None:
        """before_request: default protection of ``/api/v3`` (skipped for decorated views)."""
        if not self.enabled or request.method == "OPTIONS":
            return  # CORS preflights carry no credentials
        path = request.path
        if not (path == "/api/v3" or path.startswith("/api/v3/")):
            return
        view = current_app.view_functions.get(request.endpoint or "")
        if view is not None and hasattr(view, AUTH_ATTR):
            return  # public, or require_auth checks itself
        if self.bearer_subject(request) is None:
            raise unauthorized()

    def install(self, app: Quart) -> None:
        """Register the guard and the login blueprint on ``app``."""
        app.before_request(self._guard)
        app.register_blueprint(self.login_blueprint())

    # -- login routes -------------------------------------------------------------------------
    def login_blueprint(self) -> Blueprint:
        """``POST /api/login`` and ``GET /api/login/refresh``."""
        bp = Blueprint("auth", __name__)

        @bp.post("/api/login")
        async def login() -> Response:
            if not self.enabled:
                raise ApiError(400, "Authentication is disabled", "api.auth.enable is false")
            body = await read_json()
            username = body.get("username") if isinstance(body, dict) else None
            password = body.get("password") if isinstance(body, dict) else None
            if not isinstance(username, str) or not isinstance(password, str) or not username:
                await trio.sleep(self.login_delay)
                raise ApiError(400, "Missing authorization credentials",
                               "expected {\"username\": ..., \"password\": ...}")
            if not self.check_credentials(username, password):
                await trio.sleep(self.login_delay)
                raise ApiError(401, "Invalid authorization credentials",
                               "invalid username or password")
            return json_response({
                "access_token": self.issue(username, "access"),
                "refresh_token": self.issue(username, "refresh"),
            })

        @bp.get("/api/login/refresh")
        async def refresh() -> Response:
            if not self.enabled:
                raise ApiError(400, "Authentication is disabled", "api.auth.enable is false")
            subject = self.bearer_subject(request, "refresh")
            if subject is None:
                raise unauthorized("Missing or invalid refresh token")
            return json_response({"access_token": self.issue(subject, "access")})

        return bp
