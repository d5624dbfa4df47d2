"""trio_core.storage.cleanup: cleanup rules from process configs, expiry, the cleaner."""

from __future__ import annotations

from typing import Any

import trio

from trio_core.engine.process_config import ProcessConfig
from trio_core.storage.cleanup import Cleaner, Rule, expired, purge_targets, rules_of
from trio_core.storage.memfs import FileInfo, MemFS


def _config(pid: str, cleanup: list[dict[str, Any]]) -> ProcessConfig:
    return ProcessConfig.from_json({
        "id": pid, "reference": "ref",
        "input": [{"id": "in", "address": "testsrc", "options": ["-f", "lavfi"]}],
        "output": [{"id": "out", "address": "{memfs}/{processid}.m3u8", "options": [],
                    "cleanup": cleanup}],
    })


def test_rules_from_config() -> None:
    cfg = _config("p1", [
        {"pattern": "memfs:/{processid}_**.ts", "max_files": 3, "purge_on_delete": True},
        {"pattern": "diskfs:/{reference}/*.jpg", "max_file_age_seconds": 60},
        {"pattern": "mem:/{outputid}.m3u8"},
        {"pattern": "s3:/x"}, {"pattern": "no-prefix"}, {"pattern": "memfs:/[bad"},
    ])
    from trio_core.engine.placeholders import resolve_config

    rules = rules_of(resolve_config(cfg, {"memfs": "http://h/memfs"}))
    assert rules == (
        Rule("mem", "/p1_**.ts", 3, 0, True),
        Rule("disk", "/ref/*.jpg", 0, 60, False),
        Rule("mem", "/out.m3u8", 0, 0, False),
    )


def test_expired_and_purge_targets() -> None:
    files = [FileInfo(f"/s{i}.ts", 1, 100.0 + i) for i in range(6)]
    assert expired(Rule("mem", "", max_files=4), files, 200.0) == ["/s0.ts", "/s1.ts"]
    assert sorted(expired(Rule("mem", "", max_file_age_seconds=10), files, 113.5)) == [
        "/s0.ts", "/s1.ts", "/s2.ts", "/s3.ts"]
    assert expired(Rule("mem", ""), files, 1e9) == []
    assert purge_targets(Rule("mem", ""), files) == []
    nested = [FileInfo("/a", 1, 0), FileInfo("/a/b/c", 1, 0), FileInfo("/a/b", 1, 0)]
    assert purge_targets(Rule("mem", "", purge_on_delete=True), nested) == ["/a/b/c", "/a/b", "/a"]


class _Proc:
    def __init__(self, cfg: ProcessConfig) -> None:
        self.id = cfg.id
        self.config = cfg


class _Supervisor:
    def __init__(self) -> None:
        self.procs: dict[str, _Proc] = {}
        self.placeholders = {"memfs": "http://127.0.0.1:1/memfs"}

    def ids(self) -> list[str]:
        return list(self.procs)

    def get(self, pid: str) -> _Proc:
        return self.procs[pid]


async def test_cleaner_lifecycle() -> None:
    now = [1000.0]
    fs = MemFS(clock=lambda: now[0])
    sup = _Supervisor()
    rules = [{"pattern": "memfs:/{processid}_*.ts", "max_files": 2, "purge_on_delete": True},
             {"pattern": "memfs:/{processid}.m3u8", "max_file_age_seconds": 5}]
    sup.procs["a"] = _Proc(_config("a", rules))
    sup.procs["b"] = _Proc(_config("b", rules))
    cleaner = Cleaner({"mem": fs}, sup, interval=3600, clock=lambda: now[0])
    for pid in ("a", "b"):
        for i in range(4):
            now[0] += 1
            fs.write(f"/{pid}_{i}.ts", b"x")
        fs.write(f"/{pid}.m3u8", b"#EXTM3U")
    fs.write("/unrelated.ts", b"x")
    await cleaner.sync()
    await cleaner.sweep()
    names = sorted(f.name for f in fs.list())
    assert names == ["/a.m3u8", "/a_2.ts", "/a_3.ts", "/b.m3u8", "/b_2.ts", "/b_3.ts",
                     "/unrelated.ts"]
    now[0] += 10  # the playlists are older than 5 s now
    await cleaner.sweep()
    assert fs.open("/a.m3u8") is None and fs.open("/b.m3u8") is None
    # delete: a's purge_on_delete files go, b's stay
    del sup.procs["a"]
    await cleaner.sync()
    assert sorted(f.name for f in fs.list()) == ["/b_2.ts", "/b_3.ts", "/unrelated.ts"]
    # update: the old rules are withdrawn (purged) before the new FFmpeg starts (on_start)
    proc_b = sup.procs["b"]
    proc_b.config = _config("b", [{"pattern": "memfs:/other_*.ts", "purge_on_delete": True}])

    class _Ctx:
        process = proc_b

    await cleaner.on_start(_Ctx())
    assert sorted(f.name for f in fs.list()) == ["/unrelated.ts"]
    # shutdown: cancelling run purges what the remaining rules cover
    fs.write("/other_1.ts", b"x")
    with trio.move_on_after(0.2):
        await cleaner.run()
    assert sorted(f.name for f in fs.list()) == ["/unrelated.ts"]


async def test_cleaner_on_disk_and_update_with_same_rules(tmp_path: Any) -> None:
    from trio_core.storage.disk import DiskFS

    disk = DiskFS(str(tmp_path / "data"))
    sup = _Supervisor()
    rules = [{"pattern": "diskfs:/{processid}/*.jpg", "max_files": 2, "purge_on_delete": True}]
    sup.procs["cam"] = _Proc(_config("cam", rules))
    (tmp_path / "data" / "cam").mkdir()
    for i in range(5):
        path = tmp_path / "data" / "cam" / f"{i}.jpg"
        path.write_bytes(b"j")
        import os

        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "data" / "keep.txt").write_text("x")
    cleaner = Cleaner({"mem": MemFS(), "disk": disk}, sup, interval=3600)
    await cleaner.sync()
    await cleaner.sweep()
    assert sorted(p.name for p in (tmp_path / "data" / "cam").iterdir()) == ["3.jpg", "4.jpg"]
    # an update with the very same rules still withdraws them first (Core: unset + set)
    sup.procs["cam"].config = _config("cam", rules)
    await cleaner.sync()
    assert list((tmp_path / "data" / "cam").iterdir()) == []
    assert (tmp_path / "data" / "keep.txt").exists()
