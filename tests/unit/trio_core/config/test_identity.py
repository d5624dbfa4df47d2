"""trio_core.config.identity: the instance id and name persist in ``<db>/instance.json``; an unusable
file is replaced."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from trio_core.config.identity import INSTANCE_FILE, generate_name, load_instance


def test_created_once_then_loaded(tmp_path: Path) -> None:
    first = load_instance(str(tmp_path / "db"))
    uuid.UUID(first.id)
    assert first.name and " " not in first.name
    assert load_instance(str(tmp_path / "db")) == first
    stored = json.loads((tmp_path / "db" / INSTANCE_FILE).read_text())
    assert stored == {"id": first.id, "name": first.name}


def test_unusable_files_are_replaced_and_a_missing_name_is_generated(tmp_path: Path) -> None:
    (tmp_path / INSTANCE_FILE).write_text("{not json")
    replaced = load_instance(str(tmp_path))
    assert json.loads((tmp_path / INSTANCE_FILE).read_text())["id"] == replaced.id
    (tmp_path / INSTANCE_FILE).write_text(json.dumps({"id": "kept"}))
    kept = load_instance(str(tmp_path))
    assert kept.id == "kept" and kept.name
    assert len({generate_name() for _ in range(50)}) > 1
