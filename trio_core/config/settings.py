"""Server settings: every setting declared once, loaded from a JSON file and ``CORE_*`` env vars.

Each :class:`Setting` has a dotted name (``api.auth.enable``), the environment variable that
overrides it (``CORE_API_AUTH_ENABLE``: ``CORE_`` + upper-cased name with ``.`` -> ``_``), a
type, a default and a description. Precedence: default < JSON config file < environment.

The JSON file nests the dotted names: ``{"api": {"address": "127.0.0.1:8080",
"auth": {"enable": true}}}``. Its path comes from ``--config PATH`` or ``CORE_CONFIGFILE``.
Unknown keys, values of the wrong type, bad ports and unparsable IPs raise
:class:`SettingError`, which names the key (and the env var when the value came from there).

``demo.enable`` has no fixed default: it is on when no config file is used (a fresh
``trio-core`` shows something at once) and off when a config file is loaded; set it explicitly
to override. ``api.auth.jwt.secret`` is replaced by a random secret when empty.

Everything here is synchronous and pure (apart from reading the config file).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trio_core.util.addresses import parse_address

CONFIGFILE_ENV = "CORE_CONFIGFILE"

LOG_LEVELS = ("debug", "info", "warning", "error", "silent")
#: Core's spellings (its ``log.level`` is one of silent, error, warn, info, debug) -> ours
LOG_LEVEL_ALIASES = {"warn": "warning"}

#: secrets drawn at random per start when left empty (as Core does): the JWT secret, and the
#: memfs password (so ``GET /api/v3/config`` shows the one in use, as Core's does)
RANDOM_WHEN_EMPTY = ("api.auth.jwt.secret", "storage.memory.auth.password")


class SettingError(ValueError):
    """A setting has an invalid value (or the config file is unusable).

    ``key`` is the dotted setting name (or ``"<config file>"``), ``env`` the environment variable
    the bad value came from (``None`` when it came from the file or a default).
    """

    def __init__(
        self, key: str, message: str, env: str | None = None, file: str | None = None
    ) -> None:
        self.key = key
        self.message = message
        self.env = env
        self.file = file
        where = f" (from environment variable {env})" if env else ""
        where = where or (f" (in config file {file})" if file else "")
        super().__init__(f"invalid setting {key}{where}: {message}")


# --------------------------------------------------------------------------------------------
# value types: parse(text-or-json-value) -> python value, raising ValueError with a reason


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {json.dumps(value)}")
    return value


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"expected a boolean (true/false), got {json.dumps(value)}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {json.dumps(value)}")


def _parse_nonneg_int(value: Any) -> int:
    number = _parse_int(value)
    if number < 0:
        raise ValueError(f"must be >= 0, got {number}")
    return number


def _parse_fanout_workers(value: Any) -> int:
    number = _parse_nonneg_int(value)
    if number > 256:
        raise ValueError(f"must be 0..256, got {number}")
    return number


def _parse_percent(value: Any) -> int:
    number = _parse_nonneg_int(value)
    if number > 100:
        raise ValueError(f"must be 0..100, got {number}")
    return number


def _parse_positive_int(value: Any) -> int:
    number = _parse_int(value)
    if number < 1:
        raise ValueError(f"must be >= 1, got {number}")
    return number


def _parse_port(value: Any) -> int:
    number = _parse_int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"port must be in 0..65535, got {number}")
    return number


def _parse_ip(value: Any) -> str:
    text = _parse_str(value).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def _parse_optional_ip(value: Any) -> str:
    text = _parse_str(value).strip()
    return _parse_ip(text) if text else ""


def _parse_ip_list(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        raise ValueError(f"expected a list of IP addresses, got {json.dumps(value)}")
    return [_parse_ip(item) for item in items]


def _parse_optional_address(value: Any) -> str:
    text = _parse_str(value).strip()
    return _parse_address(text) if text else ""


_ICE_URL_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def _parse_ice_servers(value: Any) -> list[dict[str, Any]]:
    """A list of ICE servers (JSON text from the environment): each ``{"urls": str | [str],
    "username": str, "credential": str}`` or ``{"urls", "secret", "ttl"}`` (TURN REST)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of ICE servers, got {json.dumps(value)}")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"ICE server {i}: expected an object, got {json.dumps(item)}")
        unknown = set(item) - {"urls", "username", "credential", "secret", "ttl", "user"}
        if unknown:
            raise ValueError(f"ICE server {i}: unknown keys {sorted(unknown)}")
        urls = item.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        if not urls or not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ValueError(f"ICE server {i}: 'urls' must be a URL or a list of URLs")
        for url in urls:
            if not url.startswith(_ICE_URL_SCHEMES) or any(c in url for c in '<>;," '):
                raise ValueError(f"ICE server {i}: {url!r} is not a stun:/stuns:/turn:/turns: URL")
        server: dict[str, Any] = {"urls": list(urls)}
        for key in ("username", "credential", "secret", "user"):
            if key in item:
                if not isinstance(item[key], str) or any(c in item[key] for c in '"\\\r\n'):
                    raise ValueError(f"ICE server {i}: {key!r} must be a string without quotes")
                server[key] = item[key]
        if "secret" in server and ("username" in server or "credential" in server):
            raise ValueError(f"ICE server {i}: give either 'secret' (TURN REST) or "
                             "'username'/'credential', not both")
        if "ttl" in item:
            ttl = item["ttl"]
            if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
                raise ValueError(f"ICE server {i}: 'ttl' must be a positive number of seconds")
            server["ttl"] = ttl
        if any(u.startswith(("turn:", "turns:")) for u in urls) and not (
                "secret" in server or "credential" in server):
            raise ValueError(f"ICE server {i}: a TURN server needs 'username'/'credential' "
                             "or 'secret'")
        out.append(server)
    return out


def _parse_address(value: Any) -> str:
    host, port = parse_address(_parse_str(value))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_level(value: Any) -> str:
    text = _parse_str(value).strip().lower()
    text = LOG_LEVEL_ALIASES.get(text, text)
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of debug, info, warn (warning), error, silent, got {text!r}")
    return text


# --------------------------------------------------------------------------------------------
# declarations


@dataclass(frozen=True)
class Setting:
    """One declared setting."""

    name: str
    type: str  # short type name shown by --help-config
    default: Any
    description: str
    parse: Callable[[Any], Any]
    alt_env: tuple[str, ...] = ()
    secret: bool = False

    @property
    def env(self) -> str:
        """The environment variable: ``CORE_`` + upper-cased name, ``.`` -> ``_``."""
        return "CORE_" + self.name.upper().replace(".", "_")

    @property
    def attr(self) -> str:
        """The attribute name on :class:`Config` (``api.auth.enable`` -> ``api_auth_enable``)."""
        return self.name.replace(".", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting("api.address", "address", "127.0.0.1:8080",
            "HTTP listen address host:port (empty host = all interfaces, port 0 = ephemeral).",
            _parse_address, alt_env=("CORE_ADDRESS",)),
    Setting("api.allow_public_bind", "bool", False,
            "Allow listening on a non-loopback address with auth disabled (explicit opt-in).",
            _parse_bool),
    Setting("api.auth.enable", "bool", False,
            "Require a JWT (POST /api/login) for /api/v3/*.", _parse_bool),
    Setting("api.auth.username", "string", "", "Login user name (required with auth).",
            _parse_str),
    Setting("api.auth.password", "string", "", "Login password (required with auth).",
            _parse_str, secret=True),
    Setting("api.auth.jwt.secret", "string", "",
            "HS256 signing secret for JWTs; empty = generated once and kept in "
            "<db.dir>/jwt-secret (mode 0600), so tokens survive restarts.",
            _parse_str, secret=True),
    Setting("db.dir", "path", "./config", "Directory of db.json (the process database).",
            _parse_str),
    Setting("db.max_process_config_bytes", "int", 1024 * 1024,
            "Largest process config (as JSON) that is stored; bigger ones get 400 (0 = no limit).",
            _parse_nonneg_int),
    Setting("db.max_metadata_value_bytes", "int", 1024 * 1024,
            "Largest metadata value (as JSON) that is stored; bigger ones get 400 (0 = no limit).",
            _parse_nonneg_int),
    Setting("storage.disk.dir", "path", "./data",
            "Directory FFmpeg may write files to; the {diskfs} placeholder.", _parse_str),
    Setting("ffmpeg.binary", "string", "",
            "FFmpeg binary (path or name on PATH); empty = ffmpeg on PATH, else imageio-ffmpeg's.",
            _parse_str),
    Setting("ffmpeg.max_processes", "int", 0,
            "Maximum number of running FFmpeg processes (0 = unlimited).", _parse_nonneg_int,
            alt_env=("CORE_FFMPEG_MAXPROCESSES",)),
    Setting("ffmpeg.log.max_lines", "int", 50, "Log lines kept per process run.",
            _parse_nonneg_int),
    Setting("ffmpeg.log.max_history", "int", 3, "Previous runs' logs kept per process.",
            _parse_nonneg_int),
    Setting("webrtc.enable", "bool", True, "Enable WebRTC (WHEP) playback of processes.",
            _parse_bool),
    Setting("webrtc.public_ip", "ip", "",
            "IP address advertised in ICE candidates (empty = the bind address).",
            _parse_optional_ip),
    Setting("webrtc.nat_1_to_1_ips", "ip list", [],
            "Extra IPs advertised as host candidates (1:1 NAT); env: space-separated.",
            _parse_ip_list),
    Setting("webrtc.udp_mux_port", "port", 0,
            "UDP port of the single WebRTC media socket (0 = ephemeral).", _parse_port),
    Setting("webrtc.bind_address", "ip", "127.0.0.1",
            "IP address the WebRTC UDP socket binds to.", _parse_ip),
    # -- api (identity, Core config layout, login backoff, request limits): issue 9 / 12 --
    Setting("api.auth.disable_localhost", "bool", False,
            "Let requests from 127.0.0.1/::1 through without a token (Core's option).",
            _parse_bool),
    Setting("api.auth.login_backoff_ms", "int", 1000,
            "First wait after a failed login from an address; doubles per failure.",
            _parse_nonneg_int),
    Setting("api.auth.login_backoff_max_ms", "int", 30000,
            "Longest wait between login attempts from one address.", _parse_nonneg_int),
    Setting("log.max_lines", "int", 1000,
            "Server log lines kept in memory for GET /api/v3/log.", _parse_nonneg_int,
            alt_env=("CORE_LOG_MAXLINES",)),
    # (end api)
    # -- process engine hardening (pid records, hung FFmpeg): issue 12 --
    # (end engine)
    # -- storage (memfs, disk, cors, cleanup): issue 10 --
    Setting("storage.disk.max_size_mbytes", "int", 0,
            "Max. megabytes for storage.disk.dir, 0 = unlimited (registered as in Core; "
            "not enforced, like Core v16.16).", _parse_nonneg_int,
            alt_env=("CORE_STORAGE_DISK_MAXSIZEMBYTES",)),
    Setting("storage.memory.auth.enable", "bool", True,
            "Require HTTP Basic auth for PUT, POST and DELETE on /memfs.", _parse_bool),
    Setting("storage.memory.auth.username", "string", "admin",
            "Basic-auth user name for writes to /memfs.", _parse_str),
    Setting("storage.memory.auth.password", "string", "",
            "Basic-auth password for writes to /memfs; empty = random per start "
            "({memfs} carries it to FFmpeg).", _parse_str, secret=True),
    Setting("storage.memory.max_size_mbytes", "int", 0,
            "Max. megabytes held by /memfs, 0 = unlimited.", _parse_nonneg_int,
            alt_env=("CORE_STORAGE_MEMORY_MAXSIZEMBYTES",)),
    Setting("storage.memory.purge", "bool", False,
            "When /memfs is full, remove the oldest files instead of refusing the write.",
            _parse_bool),
    Setting("storage.cors.origins", "origin list", ["*"],
            "Allowed CORS origins for /memfs and / (env: comma-separated).",
            lambda v: [o.strip() for o in _parse_str(
                ",".join(map(_parse_str, v)) if isinstance(v, list) else v).split(",") if o.strip()]),
    # (end storage)
    # -- rtmp server: issue 11 --
    Setting("rtmp.enable", "bool", False, "Enable the RTMP server (publish/play by path).",
            _parse_bool),
    Setting("rtmp.enable_tls", "bool", False,
            "Enable the RTMPS server too (needs tls.cert_file and tls.key_file).", _parse_bool),
    Setting("rtmp.address", "address", "127.0.0.1:1935",
            "RTMP listen address (Core: \":1935\"; \":1935\" = all interfaces).", _parse_address),
    Setting("rtmp.address_tls", "address", "127.0.0.1:1936",
            "RTMPS listen address (Core: \":1936\").", _parse_address),
    Setting("rtmp.app", "string", "/",
            "RTMP app: publish paths must start with it; absolute (\"/\", \"/live\").",
            _parse_str),
    Setting("rtmp.token", "string", "",
            "Token required to publish and play (?token=T or last path element); empty = none.",
            _parse_str, secret=True),
    Setting("rtmp.setup_timeout", "int", 10,
            "Seconds from connect to an accepted publish or play (handshake included); a "
            "client that is not there by then is dropped (0 = 10).", _parse_nonneg_int),
    Setting("rtmp.max_connections_per_address", "int", 50,
            "Most RTMP connections from one client IP address (0 = no limit); the server's "
            "own processes (127.0.0.1, ::1) are not limited.", _parse_nonneg_int),
    Setting("tls.cert_file", "path", "", "TLS certificate (PEM) for RTMPS.", _parse_str,
            alt_env=("CORE_TLS_CERTFILE",)),
    Setting("tls.key_file", "path", "", "TLS private key (PEM) for RTMPS.", _parse_str,
            alt_env=("CORE_TLS_KEYFILE",)),
    # (end rtmp)
    # -- srt server: issue 11 --
    Setting("srt.enable", "bool", False,
            "Enable the SRT server (push ingest; {srt,name=...} placeholder, GET /api/v3/srt).",
            _parse_bool),
    Setting("srt.address", "address", "127.0.0.1:6000",
            "SRT (UDP) listen address host:port; loopback by default (Core: ':6000' = all "
            "interfaces), set e.g. ':6000' to accept encoders from other hosts.",
            _parse_address),
    Setting("srt.passphrase", "string", "",
            "If set (10..79 characters), connections must be encrypted with this passphrase; "
            "if empty, encrypted connections are refused.", _parse_str, secret=True),
    Setting("srt.token", "string", "",
            "If set, the stream id must carry ',token:<token>' to publish or request.",
            _parse_str, secret=True),
    Setting("srt.max_connections_per_address", "int", 50,
            "Most SRT connections from one client IP address (0 = no limit); the server's "
            "own processes (127.0.0.1, ::1) are not limited.", _parse_nonneg_int),
    # (end srt)
    # -- webrtc admission limits and interop: issue 12 / 13 --
    Setting("webrtc.max_viewers", "int", 1000,
            "Most WebRTC viewers, connected or connecting, in total (0 = no limit); over it "
            "WHEP answers 503.", _parse_nonneg_int),
    Setting("webrtc.max_viewers_per_process", "int", 500,
            "Most WebRTC viewers, connected or connecting, of one process (0 = no limit).",
            _parse_nonneg_int),
    Setting("webrtc.max_pending", "int", 200,
            "Most WHEP sessions still connecting (ICE/DTLS not done) in total (0 = no limit).",
            _parse_nonneg_int),
    Setting("webrtc.max_pending_per_process", "int", 50,
            "Most WHEP sessions still connecting per process (0 = no limit).", _parse_nonneg_int),
    Setting("webrtc.max_pending_per_client", "int", 10,
            "Most WHEP sessions still connecting per client IP address (0 = no limit).",
            _parse_nonneg_int),
    Setting("webrtc.pending_timeout", "int", 15,
            "Seconds a WHEP session may take to connect (ICE + DTLS) before it is dropped "
            "(0 = 15).", _parse_nonneg_int),
    # (end webrtc)
    # -- webrtc: ICE-TCP, ICE servers, consent: issue 21 --
    Setting("webrtc.tcp_address", "address", "",
            "ICE-TCP (RFC 6544, passive) listen address, e.g. ':8555' (all interfaces); "
            "answers then carry tcptype passive candidates (lower priority than UDP) for "
            "viewers without UDP; empty = off.", _parse_optional_address),
    Setting("webrtc.tcp_max_connections", "int", 1000,
            "Most open ICE-TCP connections in total (0 = no limit).", _parse_nonneg_int),
    Setting("webrtc.tcp_max_connections_per_ip", "int", 64,
            "Most open ICE-TCP connections from one IP address (0 = no limit).",
            _parse_nonneg_int),
    Setting("webrtc.ice_servers", "json list", [],
            "STUN/TURN servers announced to WHEP clients in Link headers: a list of "
            "{urls, username, credential} or, for TURN REST credentials (coturn "
            "use-auth-secret), {urls, secret, ttl}; env: JSON text.", _parse_ice_servers,
            secret=True),
    Setting("webrtc.consent_timeout", "int", 30,
            "Seconds without a valid ICE consent check (RFC 7675) after which a viewer is "
            "closed ('consent-expired'); 0 = 30.", _parse_nonneg_int),
    # (end webrtc issue 21)
    # -- whip ingest: issue 19 --
    Setting("whip.enable", "bool", False,
            "Enable WHIP ingest (POST /whip/{name}; needs webrtc.enable): publishers play "
            "at POST /whep/{name}, processes read {whip,name=...}.", _parse_bool),
    Setting("whip.token", "string", "",
            "Token a WHIP publisher must send (Authorization: Bearer or ?token=); empty = none.",
            _parse_str, secret=True),
    Setting("whip.play_token", "string", "",
            "Token a viewer of POST /whep/{name} must send; empty = as the API (a JWT when "
            "api.auth.enable, else none).", _parse_str, secret=True),
    Setting("whip.timeout", "int", 10,
            "Seconds without RTP after which a WHIP publisher is dropped and its name freed "
            "(0 = 10).", _parse_nonneg_int),
    Setting("whip.linger", "int", 30,
            "Seconds a WHIP channel keeps its viewers connected after its publisher left, "
            "waiting for one to come back under the same name.", _parse_nonneg_int),
    Setting("whip.max_publishers", "int", 20,
            "Most WHIP publishers at once (0 = no limit); over it POST /whip answers 503.",
            _parse_nonneg_int),
    Setting("whip.max_pending", "int", 10,
            "Most WHIP publishers still connecting (ICE/DTLS) at once (0 = no limit).",
            _parse_nonneg_int),
    Setting("whip.max_bitrate_kbit", "int", 6000,
            "Bandwidth estimate (REMB) sent to WHIP publishers: browsers ramp up to their "
            "configured bitrate up to this (0 = send none).", _parse_nonneg_int),
    # (end whip)
    # -- webrtc fan-out workers: issue 18 --
    Setting("webrtc.fanout_workers", "int", 0,
            "Native threads that protect and send WebRTC media (each owns a stripe of the "
            "viewers); 0 = as many as CPUs the process may use, 1 = no thread (all on the "
            "event loop thread), at most 256.", _parse_fanout_workers),
    # (end webrtc fan-out)
    # -- relay policy (RTMP, SRT, WebRTC): issue 17 --
    Setting("relay.gop_max_bytes", "int", 32 * 1024 * 1024,
            "Bytes a GOP cache (RTMP per published path, WebRTC per video track) may hold; "
            "a longer GOP is not cached (new readers wait for the next keyframe); 0 = no cache.",
            _parse_nonneg_int),
    Setting("relay.gop_max_packets", "int", 4000,
            "RTP packets a WebRTC GOP cache may hold (besides relay.gop_max_bytes); "
            "0 = no packet bound.", _parse_nonneg_int),
    Setting("relay.queue_max_bytes", "int", 8 * 1024 * 1024,
            "Bytes queued for one RTMP player; beyond, it skips to the next keyframe.",
            _parse_positive_int),
    Setting("relay.max_skips", "int", 3,
            "Skips to the next keyframe an RTMP player is allowed; the next overflow drops it.",
            _parse_nonneg_int),
    Setting("relay.srt_queue_max_bytes", "int", 4 * 1024 * 1024,
            "Bytes queued for one SRT subscriber (payloads libsrt refused); beyond, it is "
            "dropped (MPEG-TS has no keyframe to skip to).", _parse_positive_int),
    Setting("relay.srt_max_backlog_ms", "int", 5000,
            "Milliseconds of unacknowledged stream in an SRT subscriber's send buffer beyond "
            "which it is dropped as too slow.", _parse_nonneg_int),
    # (end relay)
    # -- metrics, sessions, prometheus: issue 14 --
    Setting("metrics.enable", "bool", False,
            "Keep a history of metrics in memory (GET/POST /api/v3/metrics).", _parse_bool),
    Setting("metrics.enable_prometheus", "bool", False,
            "Serve Prometheus metrics on GET /metrics.", _parse_bool),
    Setting("metrics.range_seconds", "int", 300,
            "Seconds of metrics history kept (metrics.enable).", _parse_nonneg_int),
    Setting("metrics.interval_seconds", "int", 2,
            "Seconds between two metrics history samples (<= metrics.range_seconds).",
            _parse_nonneg_int),
    Setting("sessions.enable", "bool", True,
            "Collect session statistics (HLS, WebRTC, ...; GET /api/v3/session).", _parse_bool),
    Setting("sessions.ip_ignorelist", "cidr list", ["127.0.0.1/32", "::1/128"],
            "Client networks (CIDR) whose sessions are neither counted nor limited; "
            "env: comma-separated.",
            lambda v: [str(ipaddress.ip_network(_parse_str(x).strip(), strict=False))
                       for x in (v.split(",") if isinstance(v, str) else
                                 v if isinstance(v, list) else [v])
                       if not (isinstance(x, str) and not x.strip())]),
    Setting("sessions.session_timeout_sec", "int", 30,
            "Seconds without traffic after which an HLS session ends (>= 1).",
            _parse_nonneg_int),
    Setting("sessions.persist", "bool", False,
            "Persist the session history in <db.dir>/sessions/<collector>.json.", _parse_bool),
    Setting("sessions.persist_interval_sec", "int", 300,
            "Seconds between two writes of the session history (0 = only at shutdown).",
            _parse_nonneg_int),
    Setting("sessions.max_bitrate_mbit", "int", 0,
            "Max. outgoing bitrate in Mbit/s per collector, 0 = unlimited (509 beyond).",
            _parse_nonneg_int, alt_env=("CORE_SESSIONS_MAXBITRATE_MBIT",)),
    Setting("sessions.max_sessions", "int", 0,
            "Max. simultaneous sessions per collector, 0 = unlimited (509 beyond).",
            _parse_nonneg_int, alt_env=("CORE_SESSIONS_MAXSESSIONS",)),
    # (end metrics)
    # -- HTTP server (trio_core/httpd): issue 23 --
    Setting("api.max_connections", "int", 4096,
            "Max. open HTTP connections on the API port (all clients together; one over it "
            "is answered 503 + Retry-After and closed).", _parse_positive_int),
    Setting("api.keepalive_timeout_sec", "int", 60,
            "Seconds an idle keep-alive HTTP connection is kept open between requests.",
            _parse_positive_int),
    # (end httpd)
    # -- cluster on Redis: issue 20 (trio_core/cluster) --
    Setting("cluster.enable", "bool", False,
            "Join a cluster whose shared state lives in Redis (cluster.redis_url); off: a "
            "single node exactly as without a cluster.", _parse_bool),
    Setting("cluster.redis_url", "str", "redis://127.0.0.1:6379/0",
            "Redis 7 of the cluster: redis://[user:pass@]host:port/db, rediss://, "
            "unix:///path/to/redis.sock, or through Sentinels: "
            "redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db].", _parse_str),
    Setting("cluster.node_id", "str", "",
            "This node's id in the cluster (default: the instance id); two running nodes "
            "with one id refuse to start.", _parse_str),
    Setting("cluster.address", "str", "",
            "The API base URL other nodes and redirected clients reach this node at, e.g. "
            "http://10.0.0.1:8080 (default: http://<api.address>).", _parse_str),
    Setting("cluster.lease_seconds", "int", 10,
            "Seconds a node's lease on a process lasts without renewal; a dead node's "
            "processes start elsewhere within this + 5 s (>= 2).", _parse_positive_int),
    Setting("cluster.relay", "bool", False,
            "Edge relay: a node serves WHEP viewers of processes other nodes run from one "
            "upstream WHEP session per process (off: they get a 307 to the owner); needs "
            "webrtc.enable.", _parse_bool),
    Setting("cluster.max_cpu_usage", "int", 90,
            "A node whose CPU use (percent of the machine) is above this takes no new "
            "processes, and the processes' limits.cpu_usage on a node add up to at most "
            "this (0 = no limit; 1..100).", _parse_percent),
    Setting("cluster.max_memory_usage", "int", 90,
            "A node whose memory use (percent of the machine) is above this takes no new "
            "processes, and the processes' limits.memory_mbytes on a node add up to at most "
            "this share of its memory (0 = no limit; 1..100).", _parse_percent),
    Setting("cluster.debug.disable_ffmpeg_check", "bool", False,
            "Accept nodes whose FFmpeg build (version, compiler, configuration, libraries) "
            "differs from the cluster's; off: such a node is shown degraded and takes no "
            "processes (Core v17). Must be equal on all nodes.", _parse_bool),
    # (end cluster)
    Setting("demo.enable", "bool", None,
            "Create a demo test-pattern process 'demo' at start on a fresh db (no db.json yet) "
            "(default: on without a config file, off with one).", _parse_bool),
    Setting("log.level", "level", "info", "Log level: debug, info, warn (or warning), error, silent (Core's names).",
            _parse_level),
)

_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
_BY_ATTR: dict[str, Setting] = {s.attr: s for s in SETTINGS}
assert len(_BY_ATTR) == len(SETTINGS), "setting attribute names must be unique"


# --------------------------------------------------------------------------------------------
# the loaded configuration


@dataclass
class Config:
    """Effective settings: ``cfg["api.address"]`` or ``cfg.api_address``.

    ``sources`` maps each name to ``"default"``, ``"file"`` or ``"env:<VAR>"``;
    ``config_file`` is the path loaded (or None).
    """

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __getattr__(self, attr: str) -> Any:
        setting = _BY_ATTR.get(attr)
        if setting is None:
            raise AttributeError(attr)
        return self.values[setting.name]

    @property
    def api_host(self) -> str:
        """Host part of ``api.address`` (``""`` = all interfaces)."""
        return parse_address(self.values["api.address"])[0]

    @property
    def api_port(self) -> int:
        """Port of ``api.address``."""
        return parse_address(self.values["api.address"])[1]

    def replace(self, **overrides: Any) -> Config:
        """A copy with some settings replaced (dotted names given with ``_``, or a dict via
        ``replace(**{"api.address": ...})``); values are parsed and validated like env values."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            setting = _BY_NAME.get(key) or _BY_ATTR.get(key)
            if setting is None:
                raise SettingError(key, "unknown setting")
            values[setting.name] = _parse_one(setting, raw, None)
            sources[setting.name] = "override"
        cfg = Config(values, sources, self.config_file)
        _validate(cfg)
        return cfg


def _parse_one(setting: Setting, raw: Any, env: str | None, file: str | None = None) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise SettingError(setting.name, str(exc), env, file) from None


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in _BY_NAME:
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def read_config_file(path: str) -> dict[str, Any]:
    """Read a JSON config file into ``{dotted name: raw value}``; SettingError when unusable.

    A top-level ``"version"`` key is ignored (datarhei files carry one).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise SettingError("<config file>", f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SettingError(
            "<config file>", f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise SettingError("<config file>", f"{path}: expected a JSON object")
    data.pop("version", None)
    flat: dict[str, Any] = {}
    for name, value in _flatten(data):
        if name not in _BY_NAME:
            raise SettingError(name, "unknown setting", file=path)
        flat[name] = value
    return flat


def load_config(
    config_file: str | None = None, env: Mapping[str, str] | None = None,
    file_values: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration: defaults < ``config_file`` < environment.

    ``config_file`` defaults to ``$CORE_CONFIGFILE`` (none when unset/empty); ``env`` defaults to
    ``os.environ``. ``file_values`` (dotted name -> raw value), when given, are used instead of
    reading ``config_file`` (trio_core.config.v3_mapping reads Core-layout files that way). Raises
    SettingError naming the first bad key.
    """
    environ = os.environ if env is None else env
    if config_file is None:
        config_file = environ.get(CONFIGFILE_ENV) or None
    if file_values is None:
        file_values = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        value, source = setting.default, "default"
        if setting.name in file_values:
            value, source = _parse_one(setting, file_values[setting.name], None, config_file), "file"
        for var in (setting.env, *setting.alt_env):
            if var in environ:
                value, source = _parse_one(setting, environ[var], var), f"env:{var}"
                break
        values[setting.name] = value
        sources[setting.name] = source
    if values["demo.enable"] is None:
        values["demo.enable"] = config_file is None
    for name in RANDOM_WHEN_EMPTY:
        if name in values and not values[name]:
            values[name] = secrets.token_urlsafe(32 if name == "api.auth.jwt.secret" else 18)
    cfg = Config(values, sources, config_file)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    """Cross-field checks (the same for start, ``PUT /api/v3/config`` and reload)."""
    if cfg["api.auth.enable"]:
        for name in ("api.auth.username", "api.auth.password"):
            if not cfg[name]:
                source = cfg.sources.get("api.auth.enable", "")
                env = source[4:] if source.startswith("env:") else None
                raise SettingError(name, "must be set when api.auth.enable is true", env)
    if cfg["cluster.enable"]:  # cluster on Redis (issue 20)
        _validate_cluster(cfg)
    passphrase = cfg["srt.passphrase"]
    if cfg["srt.enable"] and passphrase and not 10 <= len(passphrase) <= 79:
        # libsrt refuses it (the SRT server would not start): refused here, as Core does
        source = cfg.sources.get("srt.passphrase", "")
        raise SettingError("srt.passphrase",
                           f"an SRT passphrase has 10 to 79 characters, not {len(passphrase)}",
                           source[4:] if source.startswith("env:") else None)


def help_config() -> str:
    """The ``--help-config`` text: every setting with env var, default and description."""
    lines = ["trio-core settings (JSON config file keys nest the dotted names; env overrides file):", ""]
    for s in SETTINGS:
        if s.default is None:
            default = "(auto)"
        elif s.secret and s.name == "api.auth.jwt.secret":
            default = '"" (generated, kept in <db.dir>/jwt-secret)'
        else:
            default = json.dumps(s.default)
        env = s.env + "".join(f", {alt}" for alt in s.alt_env)
        lines.append(f"{s.name}  [{s.type}]")
        lines.append(f"    env:     {env}")
        lines.append(f"    default: {default}")
        lines.append(f"    {s.description}")
    lines.append("")
    lines.append(f"Config file: --config PATH or {CONFIGFILE_ENV}=PATH.")
    return "\n".join(lines)




def _validate_cluster(cfg: Config) -> None:
    """``cluster.*`` checks, made only when ``cluster.enable`` (issue 20)."""
    def fail(name: str, message: str) -> None:
        source = cfg.sources.get(name, "")
        raise SettingError(name, message, source[4:] if source.startswith("env:") else None)

    from trio_core.cluster.redis_url import parse as parse_redis_url
    try:
        parse_redis_url(cfg["cluster.redis_url"])
    except ValueError as exc:
        fail("cluster.redis_url", str(exc))
    if cfg["cluster.lease_seconds"] < 2:
        fail("cluster.lease_seconds", f"must be >= 2, got {cfg['cluster.lease_seconds']}")
    node_id = cfg["cluster.node_id"]
    if node_id and not all(c.isalnum() or c in "-_." for c in node_id):
        fail("cluster.node_id", f"only letters, digits, '-', '_' and '.' are allowed: {node_id!r}")
    address = cfg["cluster.address"]
    if address and not address.startswith(("http://", "https://")):
        fail("cluster.address", f"expected an http:// or https:// URL, got {address!r}")
    if not address and cfg.api_port == 0:
        fail("cluster.address", "must be set when api.address has port 0 (other nodes "
                                "could not reach this one)")
    if not address and cfg.api_host in ("", "0.0.0.0", "::", "[::]"):
        fail("cluster.address", f"must be set when api.address ({cfg['api.address']!r}) "
                                "listens on every interface: the URL other nodes reach this "
                                "one at, e.g. http://10.0.0.1:8080")
