"""trio_core.observability.hls_sessions: playlist rewriting and IP anonymisation as Core does them."""

from __future__ import annotations

from trio_core.observability.hls_sessions import SESSION_ID, new_session_id, rewrite_playlist


def test_playlist_rewrite_as_core() -> None:
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\nhigh.m3u8?x=1\n"
    out = rewrite_playlist(master, "", "/memfs/main.m3u8").splitlines()
    low, high = out[2], out[3]
    assert low.startswith("low.m3u8?session=") and SESSION_ID.match(low.split("=")[1])
    assert high.startswith("high.m3u8?session=") and "x=1" in high
    assert low.split("session=")[1] != high.split("session=")[1].split("&")[0]
    sid = new_session_id()
    media = "#EXTM3U\n#EXTINF:2,\nseg1.ts\n#EXTINF:2,\nseg2.ts?session=old\ninit.mp4\n"
    out = rewrite_playlist(media, sid, "/memfs/low.m3u8").splitlines()
    assert out[2] == f"seg1.ts?session={sid}" and out[4] == f"seg2.ts?session={sid}"
    assert out[5] == "init.mp4"


def test_anonymize_ip_as_core() -> None:
    from trio_core.observability.hls_sessions import anonymize_ip

    assert anonymize_ip("192.0.2.77") == "192.0.2.0"
    assert anonymize_ip("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::"
    assert anonymize_ip("nonsense") == "nonsense"


def test_rewrite_playlist_as_core() -> None:
    from trio_core.observability.hls_sessions import rewrite_playlist
    sid = "A" * 22
    master = rewrite_playlist("#EXTM3U\r\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/low.m3u8?b=2&a=1\n"
                              "/x/main.m3u8\nother.txt\n", "", "/x/main.m3u8")
    lines = master.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-STREAM-INF:BANDWIDTH=1"]
    assert lines[2].startswith("v/low.m3u8?a=1&b=2&session=")  # Go's sorted Encode
    assert SESSION_ID.match(lines[2].rsplit("=", 1)[1])
    assert lines[3].startswith("# m3u8 is referencing itself: /x/main.m3u8?session=")
    assert lines[4] == "other.txt"
    media = rewrite_playlist("#EXTM3U\n#EXTINF:1,\ns1.ts\nhttp://h/s2.ts?t=1\n", sid, "/l.m3u8")
    assert media == (f"#EXTM3U\n#EXTINF:1,\ns1.ts?session={sid}\n"
                     f"http://h/s2.ts?session={sid}&t=1\n")
    fake = rewrite_playlist("#EXTM3U\n#EXTINF:1,\ns1.ts\n", "", "/a/l.m3u8", "z=1&session=x")
    head, last = fake.rsplit("\n", 1)
    assert head == "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1024"
    assert last.startswith("l.m3u8?session=") and last.endswith("&z=1")
