"""Content types by file extension: datarhei Core's ``mime.types`` plus the streaming types
its players meet (``.m4s``, ``.mpd``, ``.aac``, ``.vtt``, ``.webm``). Pure lookup."""

from __future__ import annotations

import posixpath

__all__ = ["MEM_DEFAULT", "DISK_DEFAULT", "content_type"]

MEM_DEFAULT = "application/data"  # Core's default for /memfs and /api/v3/fs
DISK_DEFAULT = "text/html"  # Core's default for the disk mount at /

TYPES: dict[str, str] = {
    ".txt": "text/plain", ".htm": "text/html", ".html": "text/html",
    ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
    ".m3u8": "application/vnd.apple.mpegurl", ".xml": "application/xml",
    ".ts": "video/MP2T", ".mp4": "video/mp4", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon", ".ttf": "font/ttf", ".woff": "font/woff",
    ".woff2": "font/woff2",
    # not in Core's file, needed by HLS/DASH players
    ".m4s": "video/iso.segment", ".m4a": "audio/mp4", ".mpd": "application/dash+xml",
    ".aac": "audio/aac", ".vtt": "text/vtt", ".webm": "video/webm",
}


def content_type(path: str, default: str) -> str:
    """The type for ``path``'s extension (case-insensitive), else ``default``."""
    return TYPES.get(posixpath.splitext(path)[1].lower(), default)
