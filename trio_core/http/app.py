"""The application factory.

``create_app(auth, instance=…, started_at=…)`` returns a :class:`~trio_core.web.App` with
``GET /api`` (about), ``GET /ping``, ``POST /api/login`` (+ refresh), JSON errors everywhere,
CORS ``*`` on ``/api``; the composition root (:mod:`trio_core.server`) registers the
``/api/v3`` routes on it.

``GET /api`` answers Core v16.16's ``About``: ``app`` is ``"datarhei-core"`` (the API family
datarhei's clients check), ``name``/``id`` the instance's, ``version.number`` the Core API level
implemented (:data:`CORE_VERSION`); trio-core's own name and version are in the extra field
``implementation`` (with ``warnings``, a list of sentences, when a subsystem found a problem at
start, e.g. SRT enabled without libsrt). With auth on and no valid token it is Core's
``MinimalAbout`` (``app``, ``auths``, ``version.number`` = major only), without ``id``. Subsystems register more blueprints on the returned app
before it is served; :func:`add_fallback_index` then adds a ``/`` page if nobody claimed it.

The app holds no tasks of its own; trio-core's HTTP server (:mod:`trio_core.httpd`) serves it
(see ``trio_core.server``).
"""

from __future__ import annotations

import platform
import time
import uuid
from datetime import UTC, datetime

from trio_core import NAME, __version__
from trio_core.config.identity import Instance
from trio_core.http.auth import Authenticator
from trio_core.http.errors import install_error_handlers, json_response
from trio_core.web import App, Response, request

CORE_APP = "datarhei-core"  # Core's app.Name: what clients check in GET /api
CORE_VERSION = "16.16.0"  # the Core API level implemented
CORE_MAJOR_VERSION = CORE_VERSION.split(".")[0] + ".0.0"  # MinimalAbout's version.number

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "i686": "386", "i386": "386"}


def build_arch() -> str:
    """``os/arch`` in Go's spelling (Core reports ``runtime.GOOS + "/" + runtime.GOARCH``)."""
    machine = platform.machine().lower()
    return f"{platform.system().lower()}/{_GOARCH.get(machine, machine)}"


def rfc3339(timestamp: float) -> str:
    """A Unix time as RFC 3339 in UTC, seconds precision (Go's ``time.RFC3339``)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_app(
    auth: Authenticator | None = None, *, name: str = NAME,
    instance: Instance | None = None, started_at: float | None = None,
    warnings: list[str] | None = None,
) -> App:
    """Build the app; ``auth`` None = authentication disabled.

    ``instance`` is the identity shown in ``GET /api`` (a fresh random one when None),
    ``started_at`` the server's start (Unix time; now when None), ``warnings`` a live list of
    problems subsystems found at start (e.g. SRT enabled without libsrt), listed under
    ``implementation.warnings`` while it is not empty.
    """
    auth = auth or Authenticator(enabled=False)
    instance = instance or Instance(str(uuid.uuid4()), name)
    app = App(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 2
    started = time.time() if started_at is None else started_at
    current = instance
    install_error_handlers(app)
    auth.install(app)

    @app.get("/api")
    async def about() -> Response:
        if not auth.skips(request) and auth.bearer_subject(request) is None:
            return json_response({
                "app": CORE_APP, "auths": auth.about_auths,
                "version": {"number": CORE_MAJOR_VERSION},
            })
        # problems subsystems found at start (``warnings``), shown only when there are any
        extra = {"warnings": list(warnings)} if warnings else {}
        return json_response({
            "app": CORE_APP,
            "auths": auth.about_auths,
            "name": current.name,
            "id": current.id,
            "created_at": rfc3339(started),
            "uptime_seconds": int(time.time() - started),
            "version": {
                "number": CORE_VERSION,
                "repository_commit": "",
                "repository_branch": "",
                "build_date": "",
                "arch": build_arch(),
                "compiler": f"{platform.python_implementation()} {platform.python_version()}",
            },
            "implementation": {"name": NAME, "version": __version__, **extra},
        })

    @app.get("/ping")
    async def ping() -> Response:
        return Response("pong", content_type="text/plain; charset=UTF-8")

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


def add_fallback_index(app: App) -> None:
    """Serve a minimal ``/`` page unless a subsystem already registered ``/``."""
    if any(rule.rule == "/" for rule in app.url_map.iter_rules()):
        return

    @app.get("/")
    async def index() -> Response:
        return Response(_INDEX, content_type="text/html; charset=utf-8")
