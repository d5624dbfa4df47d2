"""HLS into memfs end to end: a real FFmpeg writes HLS to ``{memfs}`` with ``-method PUT`` the
way the Restreamer UI configures it (its options and cleanup rules; ``hls_time 1`` instead of
the UI's 2 s to see many segment rotations in a short test), players read it over HTTP while
it is written, the cleanup rules keep the window bounded, and deleting the process leaves
nothing behind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.api import Api, make_config, running_server, wait_for

AUTH = ("writer", "p@ss:word")  # characters that must be escaped in the {memfs} URL


def hls_process(pid: str) -> dict[str, Any]:
    video = ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-g", "10", "-b:v", "200k", "-threads", "1", "-pix_fmt", "yuv420p"]
    return {
        "id": pid, "reference": "tests",
        "options": ["-loglevel", "level+info", "-err_detect", "ignore_err", "-y"],
        "input": [{"id": "input_0", "address": "testsrc=size=160x120:rate=10",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [
            {   # restreamer-ui's default HLS output (src/utils/restreamer.js: HLS v3, master
                # playlist, memfs, cleanup on) with listSize 4 and segmentDuration 1 (UI: 6, 2)
                "id": "output_0", "address": "{memfs}/{processid}_{outputid}.m3u8",
                "options": ["-dn", "-sn", *video, "-f", "hls", "-start_number", "0",
                            "-hls_time", "1", "-hls_list_size", "4",
                            "-hls_flags", "append_list+delete_segments+program_date_time+temp_file",
                            "-hls_delete_threshold", "4",
                            "-hls_segment_filename", "{memfs}/{processid}_{outputid}_%04d.ts",
                            "-master_pl_name", "{processid}.m3u8", "-master_pl_publish_rate", "1",
                            "-method", "PUT"],
                "cleanup": [
                    {"pattern": "memfs:/{processid}**", "purge_on_delete": True},
                    {"pattern": "memfs:/{processid}_{outputid}.m3u8", "max_file_age_seconds": 10,
                     "purge_on_delete": True},
                    {"pattern": "memfs:/{processid}_{outputid}_**.ts", "max_files": 10,
                     "max_file_age_seconds": 10, "purge_on_delete": True},
                    {"pattern": "memfs:/{processid}.m3u8", "max_file_age_seconds": 10,
                     "purge_on_delete": True},
                ],
            },
            {   # FFmpeg never deletes here: only the max_files rule bounds the window
                "id": "keep", "address": "{memfs}/{processid}-keep.m3u8",
                "options": [*video, "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
                            "-hls_segment_filename", "{memfs}/{processid}-keep_%04d.ts",
                            "-method", "PUT", "-http_persistent", "1"],
                "cleanup": [{"pattern": "memfs:/{processid}-keep_*.ts", "max_files": 3}],
            },
        ],
        "reconnect": False, "autostart": True,
    }


async def memfs_names(api: Api, glob: str) -> list[str]:
    resp = await api.get(f"/api/v3/fs/mem?glob={glob}&sort=name")
    assert resp.status_code == 200, resp.text
    return [f["name"] for f in resp.json()]


@pytest.mark.slow
async def test_ffmpeg_hls_into_memfs(tmp_path: Path, ffmpeg: str) -> None:
    config = make_config(tmp_path, ffmpeg, **{"storage.memory.auth.username": AUTH[0],
                                              "storage.memory.auth.password": AUTH[1]})
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        resp = await api.post("/api/v3/process", hls_process("hls1"))
        assert resp.status_code == 200, resp.text
        # the command carries the resolved {memfs}: this server's port, escaped credentials
        state = (await api.get("/api/v3/process/hls1/state")).json()
        urls = [a for a in state["command"] if re.fullmatch(
            r"http://writer:p%40ss%3Aword@127\.0\.0\.1:\d+/memfs/hls1_output_0\.m3u8", a)]
        assert urls, state["command"]
        # that endpoint serves the same memfs (reads public, writes need the credentials)
        base = urls[0].replace("writer:p%40ss%3Aword@", "").rsplit("/", 1)[0]
        assert (await Api(base).request("PUT", "/x.ts", content=b"1")).status_code == 401

        async def playlist_with_segments() -> list[str] | None:
            resp = await api.get("/memfs/hls1_output_0.m3u8")
            if resp.status_code != 200:
                return None
            segments = re.findall(r"^(hls1_output_0_\d+\.ts)$", resp.text, re.M)
            return segments if len(segments) >= 2 else None

        await wait_for(playlist_with_segments, timeout=60)
        assert (await Api(base).get("/hls1_output_0.m3u8")).status_code == 200

        async def master_lists_the_variant() -> bool:
            resp = await api.get("/memfs/hls1.m3u8")
            return resp.status_code == 200 and "hls1_output_0.m3u8" in resp.text

        await wait_for(master_lists_the_variant, timeout=30)  # FFmpeg's master playlist
        # every segment the playlist lists exists
        for _ in range(3):
            resp = await api.get("/memfs/hls1_output_0.m3u8")
            assert resp.headers["content-type"] == "application/vnd.apple.mpegurl"
            segments = re.findall(r"^(hls1_output_0_\d+\.ts)$", resp.text, re.M)
            assert segments, resp.text
            for name in segments:
                seg = await api.get(f"/memfs/{name}")
                assert seg.status_code == 200, name
                assert seg.headers["content-type"] == "video/MP2T"
                assert seg.content[:1] == b"G"  # MPEG-TS sync byte
            await trio.sleep(0.7)

        # an independent player (FFmpeg) reads the master playlist over HTTP and decodes frames
        reader = await trio.run_process(
            [ffmpeg, "-hide_banner", "-nostdin", "-i", f"http://127.0.0.1:{srv.port}/memfs/hls1.m3u8",
             "-frames:v", "15", "-f", "null", "-"], capture_stdout=True, capture_stderr=True,
            check=False)
        log = reader.stderr.decode(errors="replace")
        assert reader.returncode == 0, log[-2000:]
        assert re.search(r"frame=\s*15\b", log), log[-2000:]

        # bounded over many rotations: the keep window stays within max_files (+ what is written
        # between two sweeps), the UI window within its max_files, while numbers advance
        highest = 0
        peak_keep = peak_main = 0
        with trio.fail_after(90):
            while highest < 12:
                keep = await memfs_names(api, "/hls1-keep_*.ts")
                main = await memfs_names(api, "/hls1_output_0_*.ts")
                peak_keep = max(peak_keep, len(keep))
                peak_main = max(peak_main, len(main))
                numbers = [int(n[-7:-3]) for n in keep]
                highest = max([highest, *numbers])
                await trio.sleep(0.5)
        assert 1 <= peak_keep <= 3 + 2, peak_keep  # +1 between sweeps, +1 slack for a loaded machine
        assert 1 <= peak_main <= 10 + 2, peak_main
        exec_state = (await api.get("/api/v3/process/hls1/state")).json()["exec"]
        assert exec_state == "running"

        # delete: purge_on_delete leaves no file of the process
        assert (await api.delete("/api/v3/process/hls1")).status_code == 200

        async def nothing_left() -> bool:
            return await memfs_names(api, "/hls1**") == []

        await wait_for(nothing_left, timeout=15)


async def test_tee_muxer_with_escaped_memfs(tmp_path: Path, ffmpeg: str) -> None:
    """The Restreamer UI's tee variant (used when it also publishes to RTMP/SRT): the HLS
    options live inside the tee spec, so ``{memfs^:}`` must escape the URL's colons."""
    config = make_config(tmp_path, ffmpeg, **{"storage.memory.auth.username": AUTH[0],
                                              "storage.memory.auth.password": AUTH[1]})
    hls = ("f=hls:start_number=0:hls_time=1:hls_list_size=4:"
           "hls_flags=append_list+delete_segments+program_date_time+temp_file:"
           "hls_delete_threshold=4:hls_segment_filename={memfs^:}/{processid}_%04d.ts:"
           "method=PUT")
    process = {
        "id": "tee1", "options": ["-loglevel", "level+info", "-y"],
        "input": [{"id": "input_0", "address": "testsrc=size=160x120:rate=10",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "output_0", "address": f"[{hls}]{{memfs}}/{{processid}}.m3u8",
                    "options": ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast",
                                "-g", "10", "-threads", "1", "-flags", "+global_header",
                                "-tag:v", "7", "-f", "tee"],
                    "cleanup": [{"pattern": "memfs:/{processid}**", "purge_on_delete": True}]}],
        "reconnect": False, "autostart": True,
    }
    async with running_server(config) as srv:
        api = Api(f"http://127.0.0.1:{srv.port}")
        assert (await api.post("/api/v3/process", process)).status_code == 200

        async def segments() -> list[str] | None:
            resp = await api.get("/memfs/tee1.m3u8")
            found = re.findall(r"^(tee1_\d+\.ts)$", resp.text, re.M) if resp.status_code == 200 else []
            return found if len(found) >= 2 else None

        for name in await wait_for(segments, timeout=60):
            assert (await api.get(f"/memfs/{name}")).status_code == 200
        assert (await api.delete("/api/v3/process/tee1")).status_code == 200

        async def nothing_left() -> bool:
            return await memfs_names(api, "/tee1**") == []

        await wait_for(nothing_left, timeout=15)
