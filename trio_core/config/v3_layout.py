"""datarhei Core v16.16's config layout (version 3) as data, with the pure checks on it.

:data:`CORE_LAYOUT` is every key of Core's ``config/data.go`` with its kind (bool, int, uint,
str, strlist, strmap, objlist, time), Core's default (``config/config.go``; callables for the
random ones) and Core's env var names where they differ from ``CORE_`` + path. Helpers:
:func:`core_defaults` (the default document), :func:`check_kind` (what Go's ``json.Unmarshal``
onto Core's typed struct would refuse, with Go's message), :func:`parse_env_leaf` (a value from
an environment variable, Core's list separators), :func:`core_checks` (Core's cross-field
``Validate`` rules with Core's field names and messages) and :func:`set_path`.

Pure data and functions; :mod:`trio_core.config.v3_mapping` maps trio-core's settings onto it.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CORE_CONFIG_VERSION = 3

@dataclass(frozen=True)
class Leaf:
    """One Core config value: ``kind`` (bool, int, uint, str, strlist, strmap, objlist, time),
    Core's default (a callable for random ones), Core's env var names (first = primary)."""

    kind: str
    default: Any
    env: tuple[str, ...] = ()

    def make_default(self) -> Any:
        value = self.default() if callable(self.default) else self.default
        return copy.deepcopy(value)


def _random(length: int, alphabet: str) -> Callable[[], str]:
    return lambda: "".join(secrets.choice(alphabet) for _ in range(length))


_ALNUM = string.ascii_letters + string.digits


def _L(kind: str, default: Any, *env: str) -> Leaf:  # noqa: N802 - table helper
    return Leaf(kind, default, env)


# Core v16.16 config.go, in Core's order. Env names only where they differ from CORE_ + PATH.
CORE_LAYOUT: dict[str, Any] = {
    "created_at": _L("time", None),
    "version": _L("int", CORE_CONFIG_VERSION),
    "id": _L("str", ""),
    "name": _L("str", ""),
    "address": _L("str", ":8080"),
    "update_check": _L("bool", True),
    "log": {
        "level": _L("str", "info"),
        "topics": _L("strlist", []),
        "max_lines": _L("int", 1000, "CORE_LOG_MAX_LINES", "CORE_LOG_MAXLINES"),
    },
    "db": {"dir": _L("str", "./config")},
    "host": {"name": _L("strlist", []), "auto": _L("bool", True)},
    "api": {
        "read_only": _L("bool", False),
        "access": {
            "http": {"allow": _L("strlist", []), "block": _L("strlist", [])},
            "https": {"allow": _L("strlist", []), "block": _L("strlist", [])},
        },
        "auth": {
            "enable": _L("bool", False),
            "disable_localhost": _L("bool", False),
            "username": _L("str", "", "CORE_API_AUTH_USERNAME", "RS_USERNAME"),
            "password": _L("str", "", "CORE_API_AUTH_PASSWORD", "RS_PASSWORD"),
            "jwt": {"secret": _L("str", _random(32, _ALNUM))},
            "auth0": {"enable": _L("bool", False), "tenants": _L("objlist", [])},
        },
    },
    "tls": {
        "address": _L("str", ":8181"),
        "enable": _L("bool", False),
        "auto": _L("bool", False),
        "email": _L("str", "cert@datarhei.com"),
        "cert_file": _L("str", "", "CORE_TLS_CERT_FILE", "CORE_TLS_CERTFILE"),
        "key_file": _L("str", "", "CORE_TLS_KEY_FILE", "CORE_TLS_KEYFILE"),
    },
    "storage": {
        "disk": {
            "dir": _L("str", "./data"),
            "max_size_mbytes": _L("int", 0, "CORE_STORAGE_DISK_MAX_SIZE_MBYTES",
                                  "CORE_STORAGE_DISK_MAXSIZEMBYTES"),
            "cache": {
                "enable": _L("bool", True),
                "max_size_mbytes": _L("uint", 0, "CORE_STORAGE_DISK_CACHE_MAX_SIZE_MBYTES",
                                      "CORE_STORAGE_DISK_CACHE_MAXSIZEMBYTES"),
                "ttl_seconds": _L("int", 300, "CORE_STORAGE_DISK_CACHE_TTL_SECONDS",
                                  "CORE_STORAGE_DISK_CACHE_TTLSECONDS"),
                "max_file_size_mbytes": _L("uint", 1, "CORE_STORAGE_DISK_CACHE_MAX_FILE_SIZE_MBYTES",
                                           "CORE_STORAGE_DISK_CACHE_MAXFILESIZEMBYTES"),
                "types": {
                    "allow": _L("strlist", [], "CORE_STORAGE_DISK_CACHE_TYPES_ALLOW",
                                "CORE_STORAGE_DISK_CACHE_TYPES"),
                    "block": _L("strlist", [".m3u8", ".mpd"]),
                },
            },
        },
        "memory": {
            "auth": {
                "enable": _L("bool", True),
                "username": _L("str", "admin"),
                "password": _L("str", _random(18, _ALNUM)),
            },
            "max_size_mbytes": _L("int", 0, "CORE_STORAGE_MEMORY_MAX_SIZE_MBYTES",
                                  "CORE_STORAGE_MEMORY_MAXSIZEMBYTES"),
            "purge": _L("bool", False),
        },
        "s3": _L("objlist", []),
        "cors": {"origins": _L("strlist", ["*"])},
        "mimetypes_file": _L("str", "./mime.types", "CORE_STORAGE_MIMETYPES_FILE",
                             "CORE_MIMETYPES_FILE"),
    },
    "rtmp": {
        "enable": _L("bool", False),
        "enable_tls": _L("bool", False),
        "address": _L("str", ":1935"),
        "address_tls": _L("str", ":1936"),
        "app": _L("str", "/"),
        "token": _L("str", ""),
    },
    "srt": {
        "enable": _L("bool", False),
        "address": _L("str", ":6000"),
        "passphrase": _L("str", ""),
        "token": _L("str", ""),
        "log": {"enable": _L("bool", False), "topics": _L("strlist", [])},
    },
    "ffmpeg": {
        "binary": _L("str", "ffmpeg"),
        "max_processes": _L("int", 0, "CORE_FFMPEG_MAXPROCESSES"),
        "access": {
            "input": {"allow": _L("strlist", []), "block": _L("strlist", [])},
            "output": {"allow": _L("strlist", []), "block": _L("strlist", [])},
        },
        "log": {
            "max_lines": _L("int", 50, "CORE_FFMPEG_LOG_MAX_LINES", "CORE_FFMPEG_LOG_MAXLINES"),
            "max_history": _L("int", 3, "CORE_FFMPEG_LOG_MAX_HISTORY",
                              "CORE_FFMPEG_LOG_MAXHISTORY"),
        },
    },
    "playout": {
        "enable": _L("bool", False),
        "min_port": _L("int", 0, "CORE_PLAYOUT_MIN_PORT", "CORE_PLAYOUT_MINPORT"),
        "max_port": _L("int", 0, "CORE_PLAYOUT_MAX_PORT", "CORE_PLAYOUT_MAXPORT"),
    },
    "debug": {
        "profiling": _L("bool", False),
        "force_gc": _L("int", 0, "CORE_DEBUG_FORCE_GC", "CORE_DEBUG_FORCEGC"),
        "memory_limit_mbytes": _L("int", 0),
    },
    "metrics": {
        "enable": _L("bool", False),
        "enable_prometheus": _L("bool", False),
        "range_sec": _L("int", 300, "CORE_METRICS_RANGE_SECONDS"),
        "interval_sec": _L("int", 2, "CORE_METRICS_INTERVAL_SECONDS"),
    },
    "sessions": {
        "enable": _L("bool", True),
        "ip_ignorelist": _L("strlist", ["127.0.0.1/32", "::1/128"]),
        "session_timeout_sec": _L("int", 30),
        "persist": _L("bool", False),
        "persist_interval_sec": _L("int", 300),
        "max_bitrate_mbit": _L("uint", 0, "CORE_SESSIONS_MAXBITRATE_MBIT"),
        "max_sessions": _L("uint", 0, "CORE_SESSIONS_MAX_SESSIONS", "CORE_SESSIONS_MAXSESSIONS"),
    },
    "service": {
        "enable": _L("bool", False),
        "token": _L("str", ""),
        "url": _L("str", "https://service.datarhei.com"),
    },
    "router": {
        "blocked_prefixes": _L("strlist", ["/api"]),
        "routes": _L("strmap", None),
        "ui_path": _L("str", ""),
    },
}

# list separators Core uses when a list comes from an environment variable
_ENV_LIST_SEPARATOR = {
    "storage.disk.cache.types.allow": " ", "storage.disk.cache.types.block": " ",
    "ffmpeg.access.input.allow": " ", "ffmpeg.access.input.block": " ",
    "ffmpeg.access.output.allow": " ", "ffmpeg.access.output.block": " ",
}

# --------------------------------------------------------------------------------------------
# tree helpers


def iter_leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Leaf]]:
    """``(dotted path, Leaf)`` for every leaf of ``tree``."""
    for key, node in tree.items():
        path = f"{prefix}{key}"
        if isinstance(node, Leaf):
            yield path, node
        else:
            yield from iter_leaves(node, path + ".")


LEAVES: dict[str, Leaf] = dict(iter_leaves(CORE_LAYOUT))


def _section_paths() -> set[str]:
    out: set[str] = set()
    for path in LEAVES:
        parts = path.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            out.add(".".join(parts[:i]))
    return out


SECTIONS = _section_paths()


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``doc[a][b][c] = value`` creating intermediate objects."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def core_defaults() -> dict[str, Any]:
    """Core's default document (random secrets fresh each call)."""
    doc: dict[str, Any] = {}
    for path, leaf in LEAVES.items():
        set_path(doc, path, leaf.make_default())
    return doc


# --------------------------------------------------------------------------------------------
# kind checks (what Go's json.Unmarshal onto the typed struct would refuse)

_KIND_NAMES = {"bool": "bool", "int": "int64", "uint": "uint64", "str": "string",
               "strlist": "[]string", "strmap": "map[string]string", "objlist": "[]object",
               "time": "time.Time"}


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check_kind(path: str, leaf: Leaf, value: Any) -> str | None:
    """None when ``value`` fits ``leaf``'s kind, else a Go-like message naming ``path``."""
    kind = leaf.kind
    ok: bool
    if value is None:
        ok = True  # Go leaves the current value on null for non-pointer scalars; nil for lists
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("int", "uint"):
        # integral floats (0.0) pass: some clients' models serialise numbers as floats
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
        if ok and kind == "uint" and value < 0:
            ok = False
    elif kind in ("str", "time"):
        ok = isinstance(value, str)
    elif kind == "strlist":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind == "strmap":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    else:  # objlist
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if ok:
        return None
    return (f"json: cannot unmarshal {json_kind(value)} into Go struct field "
            f"Data.{path} of type {_KIND_NAMES[kind]}")


# --------------------------------------------------------------------------------------------
# values from environment variables


def parse_env_leaf(path: str, leaf: Leaf, text: str) -> Any:
    """The value of ``leaf`` from an environment variable's text; ValueError when unusable."""
    kind = leaf.kind
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind in ("int", "uint"):
        number = int(text.strip(), 10)
        if kind == "uint" and number < 0:
            raise ValueError(f"must be >= 0, got {number}")
        return number
    if kind == "strlist":
        sep = _ENV_LIST_SEPARATOR.get(path, ",")
        return [item for item in (part.strip() for part in text.split(sep)) if item]
    if kind == "strmap":
        value = json.loads(text) if text.strip() else None
        if value is not None and not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value
    if kind == "objlist":
        raise ValueError("not settable from the environment")
    return text


# --------------------------------------------------------------------------------------------
# Core's cross-field validation


def core_checks(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Core's cross-field checks (config.go ``Validate``) over a merged document, as
    ``(field, message)`` with Core's field names and messages. Checks of values trio-core's own
    settings validate (addresses, auth credentials, ffmpeg.binary) are not repeated here."""
    problems: list[tuple[str, str]] = []
    tls, rtmp = doc["tls"], doc["rtmp"]
    if doc["api"]["auth"]["auth0"]["enable"]:
        tenants = doc["api"]["auth"]["auth0"]["tenants"] or []
        if not tenants:
            problems.append(("api.auth.auth0.enable", "at least one tenants must be set"))
        for i, tenant in enumerate(tenants):
            if not all(tenant.get(k) for k in ("domain", "audience", "clientid")):
                problems.append(("api.auth.auth0.tenants",
                                 f"domain, audience, and clientid must be set (tenant {i})"))
    if tls["enable"] and not tls["auto"] and not (tls["cert_file"] and tls["key_file"]):
        problems.append(("tls.enable", "tls.certfile and tls.keyfile must be set"))
    if tls["enable"] and tls["auto"] and not doc["host"]["name"]:
        problems.append(("host.name",
                         "a hostname must be set in order to get an automatic TLS certificate"))
    if rtmp["enable_tls"]:
        if not rtmp["enable"]:
            problems.append(("rtmp.enable",
                             "RTMP server must be enabled if RTMPS server is enabled"))
        if not tls["enable"]:
            problems.append(("rtmp.enable_tls",
                             "RTMPS server can only be enabled if TLS is enabled"))
        if not rtmp["address_tls"]:
            problems.append(("rtmp.address_tls", "RTMPS server address must be set"))
        if rtmp["enable"] and rtmp["address"] == rtmp["address_tls"]:
            problems.append(("rtmp.address",
                             "The RTMP and RTMPS server can't listen on the same address"))
    names = {"disk", "mem"}
    for s3 in doc["storage"]["s3"] or []:
        name = s3.get("name", "")
        if name in names:
            problems.append(("storage.s3", f"the name {name} is already in use or reserved"))
        names.add(name)
    playout = doc["playout"]
    if playout["enable"] and playout["min_port"] >= playout["max_port"]:
        problems.append(("playout.min_port", "must be bigger than playout.max_port"))
    cache = doc["storage"]["disk"]["cache"]
    if cache["enable"] and cache["ttl_seconds"] < 0:
        problems.append(("storage.disk.cache.ttl_seconds", "must be equal or greater than 0"))
    sessions = doc["sessions"]
    if sessions["enable"] and sessions["session_timeout_sec"] < 1:
        problems.append(("stats.session_timeout_sec", "must be equal or greater than 1"))
    if sessions["enable"] and sessions["persist_interval_sec"] < 0:
        problems.append(("stats.persist_interval_sec", "must be at equal or greater than 0"))
    service = doc["service"]
    if service["enable"]:
        if not service["token"]:
            problems.append(("service.token", "must be non-empty"))
        if not service["url"]:
            problems.append(("service.url", "must be non-empty"))
    metrics = doc["metrics"]
    if metrics["enable"]:
        if metrics["range_sec"] <= 0:
            problems.append(("metrics.range", "must be greater 0"))
        if metrics["interval_sec"] <= 0:
            problems.append(("metrics.interval", "must be greater 0"))
        if metrics["interval_sec"] > metrics["range_sec"]:
            problems.append(("metrics.interval", "must be smaller than the range"))
    return problems
