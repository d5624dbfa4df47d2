"""This server's identity: an instance id (UUID) and a human-readable name, like Core's.

Core keeps ``id`` (a random UUID) and ``name`` (a generated "adjective-noun-1234" name) in its
config file. trio-core generates them once and persists them in ``<db.dir>/instance.json`` so
they survive restarts even without a config file; a Core-layout config file (or ``CORE_ID`` /
``CORE_NAME``) that sets them wins (see :mod:`trio_core.config.v3_mapping`).

Synchronous file I/O (tiny file, read once at start); writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import dataclass

INSTANCE_FILE = "instance.json"

_ADJECTIVES = (
    "autumn", "hidden", "bitter", "misty", "silent", "empty", "dry", "dark", "summer", "icy",
    "delicate", "quiet", "white", "cool", "spring", "winter", "patient", "twilight", "dawn",
    "crimson", "wispy", "weathered", "blue", "billowing", "broken", "cold", "damp", "falling",
    "frosty", "green", "long", "late", "bold", "little", "morning", "muddy", "old", "red",
    "rough", "still", "small", "sparkling", "shy", "wandering", "withered", "wild", "black",
)
_NOUNS = (
    "waterfall", "river", "breeze", "moon", "rain", "wind", "sea", "morning", "snow", "lake",
    "sunset", "pine", "shadow", "leaf", "dawn", "glitter", "forest", "hill", "cloud", "meadow",
    "sun", "glade", "bird", "brook", "butterfly", "bush", "dew", "dust", "field", "fire",
    "flower", "firefly", "feather", "grass", "haze", "mountain", "night", "pond", "darkness",
    "snowflake", "silence", "sound", "sky", "shape", "surf", "thunder", "violet", "water",
)


def generate_name() -> str:
    """A Core-style (haikunator) name: ``adjective-noun-NNNN``."""
    return (f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-"
            f"{secrets.randbelow(10000):04d}")


@dataclass(frozen=True)
class Instance:
    """The persisted identity."""

    id: str
    name: str


def load_instance(db_dir: str) -> Instance:
    """Read ``<db_dir>/instance.json``; create it (new UUID and name) when missing or unusable.

    Raises OSError only when the file must be created and cannot be written.
    """
    path = os.path.join(db_dir, INSTANCE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
            name = data.get("name") if isinstance(data.get("name"), str) else ""
            return Instance(data["id"], name or generate_name())
    except (OSError, ValueError):
        pass
    instance = Instance(str(uuid.uuid4()), generate_name())
    os.makedirs(db_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"id": instance.id, "name": instance.name}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return instance
