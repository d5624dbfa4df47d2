"""datarhei Core's config layout (version 3, Core v16.16) over trio-core's settings.

Core's ``GET /api/v3/config`` returns the whole settings tree (``config/data.go``): ``id``,
``name``, ``address``, ``log``, ``db``, ``host``, ``api``, ``tls``, ``storage``, ``rtmp``,
``srt``, ``ffmpeg``, ``playout``, ``debug``, ``metrics``, ``sessions``, ``service``,
``router``. This module builds that tree:

* :data:`~trio_core.config.v3_layout.CORE_LAYOUT` holds every Core key with its kind and Core's
  default (``config.go``).
* Every :data:`trio_core.config.settings.SETTINGS` entry whose dotted name equals a Core JSON path is
  mapped onto that path automatically (so a setting added as ``rtmp.enable`` shows up and is
  written there with no code here); known divergences are in :data:`RENAMED` (our
  ``api.address`` is Core's top-level ``address``) and :data:`CONVERTERS` (log level names).
  Settings that are not Core paths (``webrtc.*``, ``demo.enable``, ...) are extras at their
  own dotted paths; clients ignore unknown fields.
* Core keys trio-core does not implement keep Core's defaults, are validated by kind on
  ``PUT``, and round-trip unchanged through the config file ("passthrough").

Loading (:func:`load`): a config file may be a trio-core file (nested setting names) or a
Core-layout file (``"version": 3``; unknown keys there are ignored with a warning, like Core);
Core's environment variable names are accepted where they differ from ``CORE_`` + path
(:func:`translate_env`). :class:`CoreConfigStore` serves GET/PUT: PUT merges the body over the
persisted document like Go's ``json.Unmarshal`` onto a copy, answers a wrong JSON kind with 400
``Invalid JSON`` naming the field (trio-core's own settings are kind-checked by their type, like
Core's), an invalid value with Core's 409 ``{field: [message]}``, then writes the file atomically
(``<db.dir>/config.json`` when the server was started without one) and makes it the active
config shown by GET; it takes effect after a reload. PUT validates with what start and reload
use (:func:`trio_core.config.settings.load_config` and its cross-field checks, the FFmpeg lookup, the
bind policy), so what it accepts, a reload runs; an ``ffmpeg.binary`` the environment
overrides is checked too (it is what runs once the variable is gone).

Everything here is synchronous (small files, read at start and on PUT).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from trio_core.config.bind_policy import check_bind
from trio_core.config.identity import Instance, load_instance
from trio_core.config.jwt_secret import persisted_jwt_secret
from trio_core.config.settings import (
    CONFIGFILE_ENV,
    SETTINGS,
    Config,
    Setting,
    SettingError,
    load_config,
)
from trio_core.config.startup_error import StartupError
from trio_core.config.v3_layout import (
    CORE_CONFIG_VERSION,
    LEAVES,
    SECTIONS,
    Leaf,
    check_kind,
    core_checks,
    core_defaults,
    json_kind,
    parse_env_leaf,
    set_path,
)
from trio_core.ffmpeg.binary import FFmpegNotFound, find_ffmpeg

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "config.json"  # written into db.dir when the server has no config file


# trio-core setting name -> Core path, where they differ: our api.address, and Core's own
# variable names that differ from its JSON paths (a setting may be named either way)
RENAMED: dict[str, str] = {
    "api.address": "address",
    "metrics.range_seconds": "metrics.range_sec",
    "metrics.interval_seconds": "metrics.interval_sec",
    "storage.disk.cache.type.allow": "storage.disk.cache.types.allow",
    "storage.disk.cache.type.block": "storage.disk.cache.types.block",
}

# Core path -> (to Core JSON, from Core JSON) where the value spelling differs
_LEVEL_TO_CORE = {"warning": "warn"}
_LEVEL_FROM_CORE = {"warn": "warning"}
CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "log.level": (
        lambda v: _LEVEL_TO_CORE.get(v, v),
        lambda v: _LEVEL_FROM_CORE.get(v.lower(), v) if isinstance(v, str) else v,
    ),
}

# Core paths owned by the instance identity rather than a setting
_IDENTITY = ("id", "name")


def core_path(setting: Setting) -> str:
    """Where ``setting`` lives in the Core-layout document."""
    return RENAMED.get(setting.name, setting.name)


def _to_core(setting: Setting, value: Any) -> Any:
    conv = CONVERTERS.get(core_path(setting))
    return conv[0](value) if conv else copy.deepcopy(value)


def _from_core(setting: Setting, value: Any) -> Any:
    conv = CONVERTERS.get(core_path(setting))
    return conv[1](value) if conv else value


# --------------------------------------------------------------------------------------------
# environment


def translate_env(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` where Core's env names (aliases, spellings that differ from
    ``CORE_`` + path) also appear under trio-core's canonical name ``CORE_`` + PATH."""
    env = dict(environ)
    for path, leaf in LEAVES.items():
        canonical = "CORE_" + path.upper().replace(".", "_")
        if canonical in env:
            continue
        for name in leaf.env:
            if name in env:
                env[canonical] = env[name]
                break
    return env


# --------------------------------------------------------------------------------------------
# reading a config file (either layout) into setting values + passthrough


_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
_BY_CORE_PATH: dict[str, Setting] = {core_path(s): s for s in SETTINGS}


@dataclass
class FileContents:
    """A config file split into setting values (raw, our spelling) and Core-only values."""

    settings: dict[str, Any]  # setting name -> raw value
    passthrough: dict[str, Any]  # Core path -> value (Core keys we do not implement)
    identity: dict[str, str]  # "id"/"name" when the file sets them
    created_at: str | None


def _walk_doc(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for the leaves of a document: descends into objects unless the path
    is a setting or a Core leaf (whose value may itself be an object)."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in _BY_NAME and path not in LEAVES:
            yield from _walk_doc(value, path + ".")
        else:
            yield path, value


def split_document(doc: Mapping[str, Any], source: str, *, strict: bool) -> FileContents:
    """Split a parsed config document; SettingError for wrong kinds (and unknown keys when
    ``strict``)."""
    contents = FileContents({}, {}, {}, None)
    address_from: dict[str, Any] = {}
    for path, value in _walk_doc(doc):
        if path in ("version", "created_at"):
            if path == "created_at" and isinstance(value, str):
                contents.created_at = value
            continue
        if path in _IDENTITY:
            if not isinstance(value, str):
                raise SettingError(path, f"expected a string, got {json.dumps(value)}", file=source)
            if value:
                contents.identity[path] = value
            continue
        setting = _BY_NAME.get(path) or _BY_CORE_PATH.get(path)
        if setting is not None:
            if setting.name == "api.address":
                address_from[path] = value
            contents.settings[setting.name] = _from_core(setting, value)
            continue
        leaf = LEAVES.get(path)
        if leaf is not None:
            problem = check_kind(path, leaf, value)
            if problem:
                raise SettingError(path, problem, file=source)
            contents.passthrough[path] = copy.deepcopy(value)
            continue
        if strict:
            raise SettingError(path, "unknown setting", file=source)
        log.warning("config file %s: ignoring unknown key %s", source, path)
    if len(address_from) == 2 and address_from["address"] != address_from["api.address"]:
        raise SettingError("address", "address and api.address disagree; set only one",
                           file=source)
    return contents


def read_file(path: str) -> FileContents:
    """Read a config file of either layout; SettingError when unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SettingError("<config file>", f"cannot read {path}: {exc.strerror}") from None
    if not text.strip():  # Core treats an empty file as "all defaults"
        return FileContents({}, {}, {}, None)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingError(
            "<config file>",
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from None
    if not isinstance(doc, dict):
        raise SettingError("<config file>", f"{path}: expected a JSON object")
    version = doc.get("version")
    if version is not None and version != CORE_CONFIG_VERSION:
        raise SettingError("version", f"unsupported config layout version {version!r} "
                           f"(expected {CORE_CONFIG_VERSION})", file=path)
    return split_document(doc, path, strict=version is None)


def default_config_file(environ: Mapping[str, str]) -> str | None:
    """The config file to use when none is given: ``<db.dir>/config.json`` if it exists
    (what ``PUT /api/v3/config`` writes when the server started without a file)."""
    db_dir = environ.get("CORE_DB_DIR") or _BY_NAME["db.dir"].default
    candidate = os.path.join(db_dir, CONFIG_FILE_NAME)
    return candidate if os.path.isfile(candidate) else None


def load(config_file: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The effective configuration from a file of either layout plus the environment
    (Core's env names accepted). ``config_file`` None: ``$CORE_CONFIGFILE``, else
    ``<db.dir>/config.json`` when it exists, else none. Raises SettingError."""
    environ = translate_env(os.environ if env is None else env)
    if config_file is None:
        config_file = environ.get(CONFIGFILE_ENV) or default_config_file(environ)
    contents = read_file(config_file) if config_file else FileContents({}, {}, {}, None)
    config = load_config(config_file, env=environ, file_values=contents.settings)
    return _with_persisted_jwt_secret(config, contents.settings, environ)


def _with_persisted_jwt_secret(
    config: Config, file_values: Mapping[str, Any], environ: Mapping[str, str]
) -> Config:
    """``config`` with the secret of ``<db.dir>/jwt-secret`` when ``api.auth.jwt.secret`` is not
    configured (unset or empty in file and env), so tokens survive restarts (see
    :mod:`trio_core.config.jwt_secret`). Raises SettingError naming ``db.dir`` when it cannot be kept."""
    name = "api.auth.jwt.secret"
    source = config.sources.get(name, "default")
    configured = (file_values.get(name) if source == "file"
                  else environ.get(source[4:]) if source.startswith("env:") else "")
    if configured:
        return config
    db_dir = os.path.abspath(config["db.dir"])
    try:
        secret = persisted_jwt_secret(db_dir)
    except OSError as exc:
        raise SettingError("db.dir", f"cannot keep the JWT secret in {db_dir}: {exc}") from None
    return config.replace(**{name: secret})


# --------------------------------------------------------------------------------------------
# the document


def _overrides(config: Config, environ: Mapping[str, str]) -> tuple[list[str], dict[str, Any]]:
    """(Core paths overridden by the environment, passthrough values from the environment)."""
    names = []
    for setting in SETTINGS:
        if config.sources.get(setting.name, "").startswith("env:"):
            names.append(core_path(setting))
    values: dict[str, Any] = {}
    for path, leaf in LEAVES.items():
        if path in _BY_CORE_PATH or path in ("version", "created_at"):
            continue
        var = "CORE_" + path.upper().replace(".", "_")
        if var in environ:
            try:
                value = parse_env_leaf(path, leaf, environ[var])
            except ValueError as exc:
                log.warning("ignoring %s: %s", var, exc)
                continue
            if path in _IDENTITY:
                continue  # identity env handled by the store
            values[path] = value
            names.append(path)
    return sorted(set(names)), values


def build_document(
    values: Mapping[str, Any], passthrough: Mapping[str, Any], instance: Instance,
    created_at: str, defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Core's defaults (``defaults``, else fresh ones), then the passthrough values, then
    every setting at its path."""
    doc = copy.deepcopy(dict(defaults)) if defaults is not None else core_defaults()
    for path, value in passthrough.items():
        set_path(doc, path, copy.deepcopy(value))
    for setting in SETTINGS:
        if setting.name in values:
            set_path(doc, core_path(setting), _to_core(setting, values[setting.name]))
    doc["id"] = instance.id
    doc["name"] = instance.name
    doc["version"] = CORE_CONFIG_VERSION
    doc["created_at"] = created_at
    return doc


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# trio-core setting type -> the Core kind its JSON value must have (settings Core lacks)
_SETTING_KINDS = {"bool": "bool", "int": "int", "port": "int", "string": "str", "path": "str",
                  "address": "str", "ip": "str", "level": "str",
                  "json list": "objlist"}  # webrtc.ice_servers (issue 21)


def _setting_kind_problem(path: str, setting: Setting, value: Any) -> str | None:
    """A Go-like message when ``value`` has the wrong JSON kind for ``setting``, else None
    (list settings also take a space-separated string, as their environment variables do)."""
    kind = _SETTING_KINDS.get(setting.type)
    if kind is None:  # "... list"
        kind = "str" if isinstance(value, str) else "strlist"
    return check_kind(path, Leaf(kind, None), value)


def _lookup(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class ConfigRejected(Exception):
    """PUT refused: ``status`` 400 (``message``, ``details``) or 409 (``errors`` map)."""

    def __init__(self, status: int, message: str = "", details: str = "",
                 errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message or str(errors))
        self.status = status
        self.message = message
        self.details = details
        self.errors = errors or {}


class CoreConfigStore:
    """The persisted and the active Core-layout document of a running server.

    ``path`` is the file PUT writes (the loaded config file, else ``<db.dir>/config.json``).
    ``reload`` (set by the server) restarts the server with the file's contents.
    """

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self._environ = translate_env(os.environ if environ is None else environ)
        db_dir = os.path.abspath(config["db.dir"])
        self.path = config.config_file or os.path.join(db_dir, CONFIG_FILE_NAME)
        contents = (read_file(config.config_file) if config.config_file and
                    os.path.isfile(config.config_file) else FileContents({}, {}, {}, None))
        stored = load_instance(db_dir)
        ident = {"id": stored.id, "name": stored.name, **contents.identity}
        for key in _IDENTITY:
            env_value = self._environ.get(f"CORE_{key.upper()}")
            if env_value:
                ident[key] = env_value
        self.instance = Instance(ident["id"], ident["name"])
        now = time.time()
        self.created_at = contents.created_at or _rfc3339(now)
        self.loaded_at = _rfc3339(now)
        self.updated_at = self.created_at
        self.reload: Callable[[], None] | None = None
        self._defaults = core_defaults()  # Core's random defaults drawn once per server run
        base_values = {}
        for setting in SETTINGS:
            if config.sources.get(setting.name, "").startswith("env:"):
                if setting.name in contents.settings:
                    base_values[setting.name] = setting.parse(contents.settings[setting.name])
                else:
                    base_values[setting.name] = (setting.default if setting.default is not None
                                                 else config[setting.name])
            else:
                base_values[setting.name] = config[setting.name]
        base_instance = Instance(contents.identity.get("id", stored.id),
                                 contents.identity.get("name", stored.name))
        self.base = build_document(base_values, contents.passthrough, base_instance,
                                   self.created_at, self._defaults)
        self.overrides, env_passthrough = _overrides(config, self._environ)
        if any(self._environ.get(f"CORE_{k.upper()}") for k in _IDENTITY):
            self.overrides = sorted(set(self.overrides) | {
                k for k in _IDENTITY if self._environ.get(f"CORE_{k.upper()}")})
        self.active = build_document(
            config.values, {**contents.passthrough, **env_passthrough}, self.instance,
            self.created_at, self._defaults,
        )

    def response(self) -> dict[str, Any]:
        """The body of ``GET /api/v3/config``."""
        return {
            "created_at": self.created_at,
            "loaded_at": self.loaded_at,
            "updated_at": self.updated_at,
            "config": copy.deepcopy(self.active),
            "overrides": list(self.overrides),
        }

    def put(self, body: Any) -> None:
        """Validate ``body`` (a Core-layout document, partial allowed), persist it, activate it.

        Raises ConfigRejected (nothing changed then) or OSError (file not writable).
        """
        if not isinstance(body, dict):
            raise ConfigRejected(400, "Invalid JSON",
                                 f"json: cannot unmarshal {json_kind(body)} into Go value of "
                                 "type api.ConfigVersion")
        version = body.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ConfigRejected(400, "Invalid JSON",
                                 "json: cannot unmarshal version into Go struct field "
                                 "ConfigVersion.version of type int64")
        if version != CORE_CONFIG_VERSION:
            raise ConfigRejected(400, "Invalid config version", f"version {version}")
        merged = copy.deepcopy(self.base)
        self._merge(merged, body, "")
        try:
            contents = split_document(merged, "request", strict=False)
        except SettingError as exc:
            raise ConfigRejected(409, errors={exc.key: [exc.message]}) from None
        errors: dict[str, list[str]] = {}
        for name, raw in contents.settings.items():
            setting = _BY_NAME[name]
            try:
                setting.parse(raw)
            except ValueError as exc:
                errors.setdefault(core_path(setting), []).append(str(exc))
        if not errors:
            try:
                new_config = load_config(self.path, env=self._environ,
                                         file_values=contents.settings)
            except SettingError as exc:
                name = core_path(_BY_NAME[exc.key]) if exc.key in _BY_NAME else exc.key
                errors.setdefault(name, []).append(exc.message)
            else:
                try:  # Core checks that ffmpeg.binary is executable, too
                    find_ffmpeg(new_config["ffmpeg.binary"])
                except FFmpegNotFound as exc:
                    errors.setdefault("ffmpeg.binary", []).append(str(exc))
                stored_binary = contents.settings.get("ffmpeg.binary")
                if (not errors and isinstance(stored_binary, str)
                        and stored_binary != _lookup(self.base, "ffmpeg.binary")
                        and stored_binary != new_config["ffmpeg.binary"]):
                    try:  # overridden by the environment now, run once the variable is gone
                        find_ffmpeg(stored_binary)
                    except FFmpegNotFound as exc:
                        errors.setdefault("ffmpeg.binary", []).append(str(exc))
                try:  # the policy the server applies at start
                    check_bind(new_config)
                except StartupError as exc:
                    errors.setdefault("address", []).append(str(exc))
        if not errors:
            _, env_passthrough = _overrides(new_config, self._environ)
            checked = build_document(new_config.values,
                                     {**contents.passthrough, **env_passthrough},
                                     self.instance, self.created_at, self._defaults)
            for name, message in core_checks(checked):
                errors.setdefault(name, []).append(message)
        if errors:
            raise ConfigRejected(409, errors=errors)
        now = _rfc3339(time.time())
        merged["created_at"] = now
        self._write(merged)
        self.base = merged
        self.created_at = self.updated_at = now
        identity = Instance(contents.identity.get("id", self.instance.id),
                            contents.identity.get("name", self.instance.name))
        _, env_passthrough = _overrides(new_config, self._environ)
        self.active = build_document(new_config.values,
                                     {**contents.passthrough, **env_passthrough}, identity, now,
                                     self._defaults)

    def _merge(self, target: dict[str, Any], patch: Mapping[str, Any], prefix: str) -> None:
        """Go's json.Unmarshal onto a copy: objects merge key by key, anything else replaces;
        unknown keys are ignored unless they are trio-core settings (extras)."""
        for key, value in patch.items():
            path = f"{prefix}{key}"
            if path in ("version", "created_at"):
                continue
            leaf = LEAVES.get(path)
            if leaf is not None and path not in _BY_CORE_PATH:
                problem = check_kind(path, leaf, value)
                if problem:
                    raise ConfigRejected(400, "Invalid JSON", problem)
                if value is None and leaf.kind not in ("strlist", "strmap", "objlist"):
                    continue  # Go keeps the current value
                if isinstance(value, float):
                    value = int(value)
                target[key] = copy.deepcopy(value)
            elif leaf is not None or path in _BY_NAME:
                # a trio-core setting: kind checked here (Core's kind when Core has the key,
                # else the setting's type), value checked later by the setting's own parser
                problem = (check_kind(path, leaf, value) if leaf is not None
                           else _setting_kind_problem(path, _BY_NAME[path], value))
                if problem:
                    raise ConfigRejected(400, "Invalid JSON", problem)
                if value is None:
                    continue
                kind = leaf.kind if leaf is not None else _SETTING_KINDS.get(_BY_NAME[path].type)
                if isinstance(value, float) and kind in ("int", "uint"):
                    value = int(value)  # an integral float passed the kind check
                target[key] = copy.deepcopy(value)
            elif path in SECTIONS or _is_extra_section(path):
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigRejected(
                        400, "Invalid JSON",
                        f"json: cannot unmarshal {json_kind(value)} into Go struct field "
                        f"Data.{path} of type struct",
                    )
                child = target.get(key)
                if not isinstance(child, dict):
                    child = target[key] = {}
                self._merge(child, value, path + ".")
            # else: unknown key, ignored like Go's decoder does

    def _write(self, doc: Mapping[str, Any]) -> None:
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _is_extra_section(path: str) -> bool:
    """True when some trio-core setting lives below ``path`` (e.g. ``webrtc``)."""
    prefix = path + "."
    return any(name.startswith(prefix) for name in _BY_NAME)
