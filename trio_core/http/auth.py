"""API authentication as datarhei Core v16 does it: JWT login and the ``/api/v3`` guard.

When ``enabled``, ``POST /api/login`` with ``{"username", "password"}`` returns
``{"access_token", "refresh_token"}`` (HS256; claims exactly Core's: ``iss="datarhei-core"``,
``sub`` = user name, ``usefor`` ``"access"|"refresh"``, ``iat``, ``exp``, ``exi`` = lifetime in
seconds, ``jti`` a UUID; access tokens live 10 minutes, refresh tokens 24 hours);
``GET /api/login/refresh`` with ``Authorization: Bearer <refresh>`` returns a new
``{"access_token"}``. Errors as Core: a body without both credentials -> 400
``{"code":400,"message":"Bad Request","details":["Missing authorization credentials"]}``;
wrong credentials -> 401 ``"Unauthorized"`` / ``"Invalid authorization credentials: invalid
username or password"``; a missing or wrong token on ``/api/v3`` or on refresh -> 401
``"Missing or invalid JWT token"``. When auth is disabled both login routes do not exist (404,
as in Core). ``about_auths`` is what ``GET /api`` lists (``["localjwt"]`` with auth on).
``disable_localhost`` (Core's ``api.auth.disable_localhost``) lets 127.0.0.1/::1 through.

Failed logins are slowed down per client address (:class:`LoginThrottle`: exponential backoff
starting at ``login_delay`` seconds, attempts of one address evaluated one at a time, so
parallel guesses do not help; 429 when too many wait). Waits are cancellable trio sleeps.

Extension points (for e.g. per-process WHEP tokens):

* ``@auth.require_auth(*alternatives)`` on a view replaces the default guard for that view:
  the request passes with a valid access token *or* when any ``alternative(request)``
  (sync or async, returns bool) accepts it. Views decorated this way may live under
  ``/api/v3`` and be reachable with their own credentials only.
* ``@auth.public`` marks a view that needs no credentials at all.
* Views under ``/api/v3`` without either decorator get the default guard (bearer only),
  so a new blueprint is protected by default.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from trio_core.http.errors import ApiError, json_content_problem, json_response, parse_json
from trio_core.http.login_throttle import LoginThrottle, Throttled
from trio_core.web import App, Blueprint, Request, Response, current_app, request

ISSUER = "datarhei-core"  # Core signs with its app name as issuer (realm)
LOCAL_VALIDATOR = "localjwt"  # what Core lists in GET /api "auths" for user/password login
ACCESS_TTL = 600.0  # Core: 10 minutes
REFRESH_TTL = 86400.0  # Core: 24 hours
LOOPBACK = frozenset({"127.0.0.1", "::1"})
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
        access_ttl: float = ACCESS_TTL, refresh_ttl: float = REFRESH_TTL, login_delay: float = 1.0,
        login_max_delay: float = 30.0, disable_localhost: bool = False,
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
        self.disable_localhost = disable_localhost
        self.throttle = LoginThrottle(delay=login_delay, max_delay=login_max_delay)

    @property
    def login_delay(self) -> float:
        """Seconds of the first backoff step after a failed login."""
        return self.throttle.delay

    @login_delay.setter
    def login_delay(self, value: float) -> None:
        self.throttle.delay = value
        self.throttle.max_delay = max(self.throttle.max_delay, value)

    @property
    def about_auths(self) -> list[str]:
        """The ``auths`` list of ``GET /api`` (Core: the registered validators)."""
        return [LOCAL_VALIDATOR] if self.enabled else []

    def skips(self, req: Request) -> bool:
        """True when the request needs no token: auth off, or localhost with disable_localhost."""
        if not self.enabled:
            return True
        return self.disable_localhost and (req.remote_addr or "") in LOOPBACK

    def allows(self, remote_addr: str, authorization: bytes | None) -> bool:
        """The guard's decision for a request from ``remote_addr`` with this
        ``Authorization`` header (for routes answered outside the app): auth off,
        localhost with ``disable_localhost``, or a valid access token."""
        if not self.enabled or (self.disable_localhost and remote_addr in LOOPBACK):
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return self.verify(token.strip(), "access") is not None

    # -- tokens -------------------------------------------------------------------------------
    def issue(self, subject: str, usefor: str) -> str:
        """A signed token for ``subject``; ``usefor`` is ``"access"`` or ``"refresh"``."""
        now = int(time.time())
        ttl = self.access_ttl if usefor == "access" else self.refresh_ttl
        claims = {
            "iss": ISSUER, "sub": subject, "usefor": usefor, "iat": now,
            "exp": now + int(ttl), "exi": int(ttl), "jti": str(uuid.uuid4()),
        }
        import jwt  # on first use: PyJWT loads cryptography's bindings (~9 MB RSS)

        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, usefor: str = "access") -> str | None:
        """The subject of a valid, unexpired token of kind ``usefor``; None otherwise."""
        import jwt  # on first use, see issue()

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
        if self.skips(req) or self.bearer_subject(req) is not None:
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
        if self.skips(request) or request.method == "OPTIONS":
            return  # CORS preflights carry no credentials
        path = request.path
        if not (path == "/api/v3" or path.startswith("/api/v3/")):
            return
        view = current_app.view_functions.get(request.endpoint or "")
        if view is not None and hasattr(view, AUTH_ATTR):
            return  # public, or require_auth checks itself
        if self.bearer_subject(request) is None:
            raise unauthorized()

    def install(self, app: App) -> None:
        """Register the guard and the login blueprint on ``app``."""
        app.before_request(self._guard)
        app.register_blueprint(self.login_blueprint())

    # -- login routes -------------------------------------------------------------------------
    def login_blueprint(self) -> Blueprint:
        """``POST /api/login`` and ``GET /api/login/refresh`` (404 while auth is disabled)."""
        bp = Blueprint("auth", __name__)

        def not_found() -> ApiError:
            return ApiError(404, "Not Found", "Not Found")

        @bp.post("/api/login")
        async def login() -> Response:
            if not self.enabled:
                raise not_found()
            data = await request.get_data()
            try:
                async with self.throttle.attempt(request.remote_addr or "") as attempt:
                    try:  # Core's local validator binds like ShouldBindJSON
                        body = None if json_content_problem() else parse_json(data)
                    except ApiError:
                        body = None
                    username = body.get("username") if isinstance(body, dict) else None
                    password = body.get("password") if isinstance(body, dict) else None
                    if not (isinstance(username, str) and isinstance(password, str)
                            and username and password):
                        attempt.failed()
                        raise ApiError(400, "Bad Request", "Missing authorization credentials")
                    if not self.check_credentials(username, password):
                        attempt.failed()
                        raise ApiError(
                            401, "Unauthorized",
                            "Invalid authorization credentials: invalid username or password",
                        )
                    attempt.succeeded()
            except Throttled as exc:
                retry = max(1, int(exc.retry_after + 0.999))
                raise ApiError(429, "Too Many Requests", str(exc),
                               headers={"Retry-After": str(retry)}) from None
            return json_response({
                "access_token": self.issue(username, "access"),
                "refresh_token": self.issue(username, "refresh"),
            })

        @bp.get("/api/login/refresh")
        async def refresh() -> Response:
            if not self.enabled:
                raise not_found()
            subject = self.bearer_subject(request, "refresh")
            if subject is None:
                raise unauthorized()
            return json_response({"access_token": self.issue(subject, "access")})

        return bp
