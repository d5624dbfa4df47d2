"""trio-core's web framework: the API's routes, blueprints, hooks and error handlers.

A small framework over werkzeug's sans-IO request/response, routing and exceptions, served as
an ASGI app by :mod:`trio_core.httpd` (issue 23: it replaced Quart, whose import chain —
Flask, Jinja2, Click, aiofiles — cost 13 MB of the idle server's memory). It keeps the subset
of Quart's API the routes use, with Quart's semantics: :class:`App` and :class:`Blueprint`
(``route``/``get``/``post``/``put``/``delete``/``patch``, ``url_prefix``, endpoint names
``blueprint.function``), ``before_request`` / ``after_request`` / ``teardown_request``,
``errorhandler``, automatic ``OPTIONS`` and ``HEAD``, the ``request``, ``g`` and
``current_app`` context proxies, :func:`redirect`, :func:`send_from_directory` and a test
client. Modules: :mod:`~trio_core.web.context` (the proxies), :mod:`~trio_core.web.wrappers`
(Request, Response), :mod:`~trio_core.web.blueprint` (route collection),
:mod:`~trio_core.web.app` (dispatch), :mod:`~trio_core.web.responses` (redirect, files),
:mod:`~trio_core.web.testing` (the test client).
"""

from __future__ import annotations

from trio_core.web.app import App
from trio_core.web.blueprint import Blueprint
from trio_core.web.context import current_app, g, request
from trio_core.web.responses import redirect, send_from_directory
from trio_core.web.wrappers import Request, Response

__all__ = ["App", "Blueprint", "Request", "Response", "current_app", "g", "redirect", "request",
           "send_from_directory"]
