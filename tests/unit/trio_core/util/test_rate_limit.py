"""trio_core.util.rate_limit: refusal logging is rate limited and counts what it suppresses."""

from __future__ import annotations


def test_refusal_rate_limit_counts_what_it_suppresses() -> None:
    from trio_core.util.rate_limit import RateLimit

    limit = RateLimit(3)
    assert [limit.take(100.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert limit.take(100.1) is None  # 0.3 tokens refilled: still over
    assert limit.take(100.5) == 3  # a token again; reports the 3 suppressed meanwhile
    assert limit.take(110.0) == 0  # refilled to the burst (3), nothing suppressed since
