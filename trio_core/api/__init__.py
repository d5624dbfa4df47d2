"""The HTTP API: app factory, process routes, auth and JSON errors."""

from .app import add_fallback_index, create_app
from .auth import Authenticator
from .errors import ApiError

__all__ = ["ApiError", "Authenticator", "add_fallback_index", "create_app"]
