"""The bind policy: the API listens beyond loopback only with auth or an explicit opt-in.

:func:`check_bind` is applied by the composition root before anything starts and by
``PUT /api/v3/config`` (:class:`~trio_core.config.v3_mapping.CoreConfigStore`) before a config is
stored, so what PUT accepts a reload runs. Pure: reads the config, raises, holds no state.
"""

from __future__ import annotations

from trio_core.config.settings import Config
from trio_core.config.startup_error import PublicBindRefused
from trio_core.util.addresses import is_loopback_host

__all__ = ["check_bind"]


def check_bind(config: Config) -> None:
    """Raise PublicBindRefused when the API would listen beyond loopback without auth.

    Allowed: a loopback host (127.0.0.0/8, ::1, ``localhost``), or ``api.auth.enable``, or the
    explicit opt-in ``api.allow_public_bind``. An empty host means all interfaces.
    """
    if config["api.auth.enable"] or config["api.allow_public_bind"]:
        return
    host = config.api_host
    if not is_loopback_host(host):
        shown = host or "all interfaces"
        raise PublicBindRefused(
            f"refusing to listen on {config['api.address']} ({shown}) without authentication: "
            "set api.auth.enable with api.auth.username/api.auth.password "
            "(CORE_API_AUTH_ENABLE, CORE_API_AUTH_USERNAME, CORE_API_AUTH_PASSWORD), "
            "or opt in with api.allow_public_bind=true (CORE_API_ALLOW_PUBLIC_BIND)"
        )
