"""The quart-trio application factory.

``create_app(supervisor, auth)`` returns a :class:`QuartTrio` app with ``GET /api`` (about),
``GET /ping``, ``POST /api/login`` (+ refresh) and the ``/api/v3/process`` routes, JSON errors
everywhere, CORS ``*`` on ``/api``. Subsystems register more blueprints on the returned app
before it is served; :func:`add_fallback_index` then adds a ``/`` page if nobody claimed it.

The app holds no tasks of its own; hypercorn serves it (see ``trio_core.server``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from .. import NAME, __version__
from .auth import Authenticator
from .errors import install_error_handlers, json_response
from .process_routes import process_blueprint

if TYPE_CHECKING:
    from ..supervisor import Supervisor

APP_KEY = "trio_core"  # app.extensions[APP_KEY] -> {"supervisor", "auth", "started_at"}


def create_app(
    supervisor: Supervisor, auth: Authenticator | None = None, *, name: str = NAME
) -> QuartTrio:
    """Build the API app over ``supervisor``; ``auth`` None = authentication disabled."""
    auth = auth or Authenticator(enabled=False)
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 2
    started_at = time.time()
    app.extensions[APP_KEY] = {"supervisor": supervisor, "auth": auth, "started_at": started_at}
    install_error_handlers(app)
    auth.install(app)
    app.register_blueprint(process_blueprint(supervisor))

    @app.get("/api")
    async def about() -> Response:
        return json_response({
            "app": NAME,
            "name": name,
            "auths": ["jwt"] if auth.enabled else [],
            "created_at": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
            "uptime_seconds": int(time.time() - started_at),
            "version": {"number": __version__, "api": "v3"},
        })

    @app.get("/ping")
    async def ping() -> Response:
        return Response("pong", content_type="text/plain")

    @app.after_request
    async def cors(response: Response) -> Response:
        if request.path.startswith("/api"):
            response.headers.setdefault("Access-Control-Allow-Origin", "*")
            response.headers.setdefault("Access-Control-Allow-Headers", "Authorization, Content-Type")
            response.headers.setdefault(
                "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, PATCH, OPTIONS"
            )
            response.headers.setdefault("Access-Control-Expose-Headers", "Location, Link")
        return response

    return app


_INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>trio-core</title></head>
<body><h1>trio-core</h1><p>API: <a href="/api">/api</a>,
<a href="/api/v3/process">/api/v3/process</a> (see README.md).</p></body></html>
"""


def add_fallback_index(app: QuartTrio) -> None:
    """Serve a minimal ``/`` page unless a subsystem already registered ``/``."""
    if any(rule.rule == "/" for rule in app.url_map.iter_rules()):
        return

    @app.get("/")
    async def index() -> Response:
        return Response(_INDEX, content_type="text/html; charset=utf-8")
