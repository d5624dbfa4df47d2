"""Route collection: the decorators :class:`~trio_core.web.app.App` and :class:`Blueprint`
share, and blueprints (routes recorded now, added to an app by ``register_blueprint``).

``route(rule, methods=…, endpoint=…, provide_automatic_options=…)`` and the ``get``/``post``/
``put``/``delete``/``patch`` shortcuts follow Quart (Flask): ``methods`` defaults to GET;
``HEAD`` comes with ``GET`` (werkzeug); ``OPTIONS`` is answered automatically (``Allow``)
unless the route lists it or ``provide_automatic_options`` is False. A blueprint's endpoints
are named ``<blueprint name>.<function name>``; its ``url_prefix`` (at construction, or given
to ``register_blueprint`` with a ``name``, to register one blueprint twice) prefixes every rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["Blueprint", "RouteRecord", "Routes", "View"]

View = Callable[..., Any]
V = TypeVar("V", bound=View)


class RouteRecord:
    """One route as declared: rule, endpoint (function name unless given), view, options."""

    __slots__ = ("automatic_options", "endpoint", "methods", "rule", "view")

    def __init__(self, rule: str, endpoint: str, view: View, methods: Iterable[str] | None,
                 automatic_options: bool | None) -> None:
        self.rule = rule
        self.endpoint = endpoint
        self.view = view
        self.methods = [m.upper() for m in (methods or ("GET",))]
        self.automatic_options = automatic_options


class Routes:
    """The route decorators; subclasses implement :meth:`add_route`."""

    def add_route(self, record: RouteRecord) -> None:
        raise NotImplementedError

    def route(self, rule: str, methods: Iterable[str] | None = None, *,
              endpoint: str | None = None,
              provide_automatic_options: bool | None = None) -> Callable[[V], V]:
        def decorate(view: V) -> V:
            self.add_route(RouteRecord(rule, endpoint or view.__name__, view, methods,
                                       provide_automatic_options))
            return view
        return decorate

    def get(self, rule: str, **options: Any) -> Callable[[V], V]:
        return self.route(rule, ["GET"], **options)

    def post(self, rule: str, **options: Any) -> Callable[[V], V]:
        return self.route(rule, ["POST"], **options)

    def put(self, rule: str, **options: Any) -> Callable[[V], V]:
        return self.route(rule, ["PUT"], **options)

    def delete(self, rule: str, **options: Any) -> Callable[[V], V]:
        return self.route(rule, ["DELETE"], **options)

    def patch(self, rule: str, **options: Any) -> Callable[[V], V]:
        return self.route(rule, ["PATCH"], **options)


class Blueprint(Routes):
    """Routes under a name (and an optional ``url_prefix``), added to an app later."""

    def __init__(self, name: str, import_name: str = "", url_prefix: str | None = None) -> None:
        if "." in name:
            raise ValueError("a blueprint's name may not contain a dot")
        self.name = name
        self.import_name = import_name
        self.url_prefix = url_prefix
        self.records: list[RouteRecord] = []

    def add_route(self, record: RouteRecord) -> None:
        if "." in record.endpoint:
            raise ValueError("an endpoint may not contain a dot")
        self.records.append(record)


def join_rule(prefix: str | None, rule: str) -> str:
    """Flask's joining of a blueprint's prefix and a rule."""
    if not prefix:
        return rule
    return "/".join((prefix.rstrip("/"), rule.lstrip("/"))) if rule else prefix
