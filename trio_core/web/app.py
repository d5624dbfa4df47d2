"""The app: routing, request hooks, error handlers, and the ASGI entry point.

A request goes through the same steps as in Quart (Flask), so the routes' behaviour did not
change when it replaced Quart (issue 23):

1. the path is matched against :attr:`App.url_map` (werkzeug's ``Map``: ``strict_slashes``,
   ``merge_slashes``, converters); a failure (404, 405, a 308 slash redirect) is kept, not
   raised yet;
2. ``before_request`` functions run in registration order; the first that returns a value
   ends the request with it (authentication lives here, so it also guards unknown paths);
3. the routing failure is raised, an automatic ``OPTIONS`` is answered (``Allow``), or the
   view runs with the path's arguments;
4. an exception goes to the most specific ``errorhandler`` (by status code, then along the
   class's MRO); an HTTP error without one, or a routing redirect, is its own response;
5. the result becomes a :class:`~trio_core.web.wrappers.Response` (a Response, str, bytes,
   dict/list as JSON, or a ``(body, status[, headers])`` tuple) and the ``after_request``
   functions run on it in reverse registration order;
6. ``teardown_request`` functions run (reverse order) whatever happened, also when the request
   is cancelled, before the response is sent.

An exception no handler takes (or one raised by a handler or an ``after_request`` function)
is logged and answered through the handler for ``InternalServerError`` (500) if any.

Served over ASGI, a request whose client goes away (``http.disconnect``, watched once the
body was read) is cancelled and not answered, as under Quart.

Cancellation: the request runs in the caller's task (the connection's, under
:mod:`trio_core.httpd`); ``trio.Cancelled`` is never caught by error handlers (it is not an
``Exception``) and passes through after the teardown functions ran.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import Map, MapAdapter, RoutingException, Rule

from trio_core.web.blueprint import Blueprint, RouteRecord, Routes, View, join_rule
from trio_core.web.context import RequestContext, bound
from trio_core.web.wrappers import Receive, Request, Response

__all__ = ["App"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ErrorKey = type[BaseException] | int


class App(Routes):
    """Routes, hooks and error handlers; an ASGI application (``await app(scope, receive,
    send)``) whose :attr:`asgi_app` a middleware may replace (it then calls the original)."""

    def __init__(self, import_name: str = "") -> None:
        self.import_name = import_name
        self.config: dict[str, Any] = {"MAX_CONTENT_LENGTH": None}
        self.url_map = Map()
        self.view_functions: dict[str, View] = {}
        self.blueprints: dict[str, Blueprint] = {}
        self.before_request_funcs: list[Callable[[], Awaitable[Any]]] = []
        self.after_request_funcs: list[Callable[[Response], Awaitable[Response]]] = []
        self.teardown_request_funcs: list[Callable[[BaseException | None], Awaitable[Any]]] = []
        self.error_handlers: dict[ErrorKey, Callable[[Any], Awaitable[Any]]] = {}
        self.asgi_app: Callable[[Scope, Receive, Send], Awaitable[None]] = self._asgi

    # -- building ------------------------------------------------------------------------------

    def add_route(self, record: RouteRecord, *, prefix: str | None = None,
                  blueprint: str | None = None) -> None:
        """Add one route (``blueprint`` names its endpoint's prefix)."""
        methods = set(record.methods)
        automatic = record.automatic_options
        if automatic is None:
            automatic = "OPTIONS" not in methods
            if automatic:
                methods.add("OPTIONS")
        endpoint = f"{blueprint}.{record.endpoint}" if blueprint else record.endpoint
        old = self.view_functions.get(endpoint)
        if old is not None and old is not record.view:
            raise AssertionError(f"endpoint {endpoint!r} is already taken by another view")
        rule = Rule(join_rule(prefix, record.rule), methods=methods, endpoint=endpoint)
        rule.provide_automatic_options = automatic  # type: ignore[attr-defined]
        self.url_map.add(rule)
        self.view_functions[endpoint] = record.view

    def register_blueprint(self, blueprint: Blueprint, *, url_prefix: str | None = None,
                           name: str | None = None) -> None:
        """Add a blueprint's routes (``name``/``url_prefix`` override its own)."""
        name = name or blueprint.name
        if self.blueprints.get(name, blueprint) is not blueprint:
            raise ValueError(f"a different blueprint is already registered as {name!r}")
        self.blueprints[name] = blueprint
        prefix = url_prefix if url_prefix is not None else blueprint.url_prefix
        for record in blueprint.records:
            self.add_route(record, prefix=prefix, blueprint=name)

    def before_request(self, function: F) -> F:
        self.before_request_funcs.append(self.ensure_async(function))
        return function

    def after_request(self, function: F) -> F:
        self.after_request_funcs.append(self.ensure_async(function))
        return function

    def teardown_request(self, function: F) -> F:
        self.teardown_request_funcs.append(self.ensure_async(function))
        return function

    def errorhandler(self, key: ErrorKey) -> Callable[[F], F]:
        """Handle an exception class (and its subclasses) or an HTTP status code."""
        def decorate(function: F) -> F:
            self.error_handlers[key] = self.ensure_async(function)
            return function
        return decorate

    @staticmethod
    def ensure_async(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """``function`` itself when it is a coroutine function; else an async wrapper that
        calls it inline (routes and hooks here are quick; nothing blocks the loop)."""
        if inspect.iscoroutinefunction(function):
            return function

        async def call(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)
        return call

    def test_client(self) -> Any:
        """A client that sends requests through the ASGI app in-process."""
        from trio_core.web.testing import TestClient
        return TestClient(self)

    # -- handling ------------------------------------------------------------------------------

    async def handle_request(self, request: Request) -> Response:
        """Answer one request (the steps in the module's docstring)."""
        context = RequestContext(self, request)
        with bound(context):
            failure: BaseException | None = None
            try:
                try:
                    adapter = self._match(request)
                    result = None
                    for function in self.before_request_funcs:
                        result = await function()
                        if result is not None:
                            break
                    if result is None:
                        result = await self._dispatch(request, adapter)
                except Exception as error:
                    result = await self._handle_user_exception(error)
                response = self.make_response(result)
                for after in reversed(self.after_request_funcs):
                    response = await after(response)
            except Exception as error:
                response = await self._handle_exception(error)
            except BaseException as error:  # cancelled: teardown still runs
                failure = error
                raise
            finally:
                for teardown in reversed(self.teardown_request_funcs):
                    try:
                        await teardown(failure)
                    except Exception:
                        log.exception("teardown_request function failed")
        return response

    def _match(self, request: Request) -> MapAdapter:
        try:
            adapter = self.url_map.bind(
                request.host or "localhost", script_name=request.root_path or "/",
                url_scheme=request.scheme, path_info=request.path,
                default_method=request.method,
                query_args=request.query_string.decode("latin-1"))
        except (ValueError, UnicodeError):
            adapter = self.url_map.bind("localhost", path_info=request.path,
                                        default_method=request.method)
        try:
            rule, args = adapter.match(return_rule=True)
        except HTTPException as error:
            request.routing_exception = error
        else:
            request.url_rule = rule
            request.view_args = args
        return adapter

    async def _dispatch(self, request: Request, adapter: MapAdapter) -> Any:
        if request.routing_exception is not None:
            raise request.routing_exception
        rule = request.url_rule
        assert rule is not None
        if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
            return Response("", headers={"Allow": ", ".join(adapter.allowed_methods())})
        view = self.view_functions[rule.endpoint]
        return await self.ensure_async(view)(**request.view_args)

    def _find_handler(self, error: BaseException) -> Callable[[Any], Awaitable[Any]] | None:
        handlers = self.error_handlers
        if isinstance(error, HTTPException) and error.code in handlers:
            return handlers[error.code]
        for cls in type(error).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None

    async def _handle_user_exception(self, error: Exception) -> Any:
        if isinstance(error, HTTPException):
            if error.code is None or isinstance(error, RoutingException):
                return error
            handler = self._find_handler(error)
            return error if handler is None else await handler(error)
        handler = self._find_handler(error)
        if handler is None:
            raise error
        return await handler(error)

    async def _handle_exception(self, error: Exception) -> Response:
        log.error("unhandled error in a request", exc_info=error)
        server_error: Any = InternalServerError(original_exception=error)
        handler = self._find_handler(server_error)
        try:
            if handler is not None:
                server_error = await handler(server_error)
            response = self.make_response(server_error)
            for after in reversed(self.after_request_funcs):
                response = await after(response)
        except Exception:
            log.exception("answering an unhandled error failed")
            response = self.make_response(InternalServerError())
        return response

    @staticmethod
    def make_response(result: Any) -> Response:
        """A view's (or handler's) result as a Response."""
        if isinstance(result, Response):
            return result
        status: int | None = None
        headers: Any = None
        if isinstance(result, tuple):
            if len(result) == 3:
                result, status, headers = result
            elif len(result) == 2 and isinstance(result[1], (Headers, dict, list)):
                result, headers = result
            elif len(result) == 2:
                result, status = result
            else:
                raise TypeError("a view's tuple is (body, status), (body, headers) or "
                                "(body, status, headers)")
        if isinstance(result, HTTPException):
            answer = result.get_response()
            response = Response(answer.get_data(), answer.status_code, answer.headers)
        elif isinstance(result, (str, bytes)):
            response = Response(result)
        elif isinstance(result, (dict, list)):
            response = Response(json.dumps(result), mimetype="application/json")
        else:
            raise TypeError(f"a view returned {type(result).__name__}, not a response")
        if status is not None:
            response.status_code = status
        if headers:
            response.headers.update(headers)
        return response

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi_app(scope, receive, send)

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            raise RuntimeError(f"ASGI scope type {kind!r} is not served")
        request = self.request_from_scope(scope, receive)
        response: Response | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_on_disconnect, request, receive, nursery.cancel_scope)
            try:
                response = await self.handle_request(request)
            except Exception:
                log.exception("request handling failed")
                response = Response("", 500)
            nursery.cancel_scope.cancel()
        if response is None:
            return  # the client left: the handling was cancelled, nobody to answer
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(name.lower().encode(), value.encode())
                                for name, value in response.headers.items()]})
        await send({"type": "http.response.body", "body": response.data, "more_body": False})

    @staticmethod
    async def _cancel_on_disconnect(request: Request, receive: Receive,
                                    scope: trio.CancelScope) -> None:
        """Cancel the request's handling when its client goes away (as Quart did: a probe
        whose client left stops its FFmpeg). Watching starts once the body was read — by the
        view, or here when the request has none — so a body is still read only on demand."""
        if request.has_body:
            await request.body_complete.wait()
        else:
            try:
                await request.get_data()
            except HTTPException:
                return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return

    def request_from_scope(self, scope: Scope, receive: Receive) -> Request:
        """The Request of an ASGI ``http`` scope (header names title-cased, as Quart)."""
        headers = Headers([(name.decode("latin-1").title(), value.decode("latin-1"))
                           for name, value in scope["headers"]])
        client = scope.get("client")
        server = scope.get("server")
        return Request(
            scope["method"], scope.get("scheme", "http"),
            tuple(server) if server else None, scope.get("root_path", ""), scope["path"],
            scope.get("query_string", b""), headers, client[0] if client else None,
            receive=receive, max_content_length=self.config.get("MAX_CONTENT_LENGTH"),
            http_version=scope.get("http_version", "1.1"), scope=scope)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        """Nothing to start or stop: acknowledge both."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
