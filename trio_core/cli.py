"""The ``trio-core`` console script (also ``python -m trio_core``).

``trio-core [--config PATH] [--help-config]``: loads the settings (file + ``CORE_*`` env),
starts the server, prints ``trio-core listening on http://HOST:PORT`` and runs until SIGINT or
SIGTERM, then stops every FFmpeg process and exits 0. The config file may be a trio-core file or
a datarhei Core (version 3) file; without one, ``<db.dir>/config.json`` is used when it exists
(``PUT /api/v3/config`` writes it). ``GET /api/v3/config/reload`` restarts the server in-process
with the stored config (:func:`trio_core.reload.serve_reloading`).

Once the server is up (and again after each in-process reload) the CLI calls ``gc.freeze()``:
every object alive after start-up (modules, the app, routes, the loaded config) moves to the
collector's permanent generation, so the cyclic collections that requests trigger no longer
walk them (full collections over them paused the API for 40-90 ms every few hundred requests).
Then, on glibc, ``malloc_trim(0)`` hands the heap pages start-up freed (import-time
temporaries) back to the kernel (idle RSS, issue 23).

Exit codes: 0 clean shutdown, 2 configuration/startup refused (bad setting, public bind
without auth, no FFmpeg, unusable db), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from trio_core import __version__
from trio_core.config.settings import SettingError, help_config
from trio_core.config.startup_error import StartupError
from trio_core.config.v3_mapping import load as load_config

#: ``log.level`` -> the logging level of the root logger ("silent": nothing, like Core's)
_LOGGING_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                   "error": logging.ERROR, "silent": logging.CRITICAL + 1}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-core",
        description="A datarhei-Core-style live-video restreaming server on trio.",
    )
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="JSON config file (default: $CORE_CONFIGFILE, else none)")
    parser.add_argument("--help-config", action="store_true",
                        help="list every setting (name, env var, default, description) and exit")
    parser.add_argument("--version", action="version", version=f"trio-core {__version__}")
    return parser


def _trim_heap() -> None:
    """Give freed heap pages back to the kernel (glibc's ``malloc_trim``; elsewhere nothing)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def _run(config: object, status: dict[str, bool]) -> None:
    from trio_core.reload import serve_reloading
    from trio_core.server import Running

    def on_running(running: Running) -> None:
        status["started"] = True
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's view (module docstring)
        _trim_heap()
        print(f"trio-core listening on {running.url}", flush=True)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def until_signal() -> None:
            async for signum in signals:
                logging.getLogger("trio_core").info(
                    "%s received, shutting down", signal.Signals(signum).name
                )
                return

        await serve_reloading(
            config, load=load_config, shutdown_trigger=until_signal,  # type: ignore[arg-type]
            on_running=on_running,
        )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _is_startup_error(exc: BaseException) -> bool:
    """Errors that mean "refused to start" (exit 2) rather than a crash."""
    if isinstance(exc, StartupError | SettingError | OSError):
        return True
    try:
        from trio_core.engine.store import StoreError
    except ImportError:  # pragma: no cover - store module missing
        return False
    return isinstance(exc, StoreError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (see module docstring)."""
    args = build_parser().parse_args(argv)
    if args.help_config:
        print(help_config())
        return EXIT_OK
    try:
        config = load_config(args.config)
    except SettingError as exc:
        print(f"trio-core: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=_LOGGING_LEVELS[config["log.level"]],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    status = {"started": False}
    try:
        trio.run(_run, config, status)
    except (StartupError, OSError, BaseExceptionGroup) as exc:
        leaves = list(_leaves(exc))
        if status["started"] or not all(_is_startup_error(leaf) for leaf in leaves):
            raise
        for leaf in leaves:
            if isinstance(leaf, OSError) and not isinstance(leaf, StartupError):
                print(f"trio-core: cannot listen on {config['api.address']}: {leaf}", file=sys.stderr)
            else:
                print(f"trio-core: {leaf}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
