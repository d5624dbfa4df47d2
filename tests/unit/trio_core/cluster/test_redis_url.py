"""trio_core.cluster.redis_url: which URLs name a Redis, Sentinel targets, redaction."""

from __future__ import annotations

import pytest

from trio_core.cluster.redis_url import SentinelTarget, parse, redacted


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/1",
                                 "unix:///run/redis.sock"])
def test_coredis_urls_are_left_to_coredis(url: str) -> None:
    assert parse(url) is None


def test_sentinel_urls() -> None:
    assert parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/main/2") == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380)), service="main", db=2)
    target = parse("rediss+sentinel://app:p%40ss@[::1]:26379,sent/main")
    assert target == SentinelTarget(sentinels=(("::1", 26379), ("sent", 26379)),
                                    service="main", db=0, username="app", password="p@ss",
                                    tls=True)
    only_password = parse("redis+sentinel://:secret@h:1/svc")
    assert only_password is not None
    assert (only_password.username, only_password.password) == (None, "secret")


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h:6379", "expected redis://"),
    ("redis+sentinel://h:26379", "/<service>"),
    ("redis+sentinel://h:26379/a/b/c", "/<service>"),
    ("redis+sentinel://h:x/main", "bad Sentinel address"),
    ("redis+sentinel://h:99999/main", "bad Sentinel address"),
    ("redis+sentinel://h:1/main/zero", "must be a number"),
])
def test_bad_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(url)


def test_passwords_are_redacted() -> None:
    assert redacted("redis://u:pw@h:1/0") == "redis://***@h:1/0"
    assert redacted("redis+sentinel://:pw@a:1,b:2/main") == "redis+sentinel://***@a:1,b:2/main"
    assert redacted("redis://h:1/0") == "redis://h:1/0"
