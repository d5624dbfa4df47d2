"""The lease book's timing rules (trio_core/cluster/lease.py): start allowed, self-fencing
stop at half the lease, SIGKILL at 0.8, renewals."""

from __future__ import annotations

import pytest

from trio_core.cluster.lease import LeaseBook


def test_stop_and_kill_points_follow_the_last_successful_renewal() -> None:
    book = LeaseBook(10)
    book.acquired("p", 7, sent_at=100.0)
    assert book.may_start("p", 104.9)
    assert book.must_stop(104.9) == []
    book.renewed("p", 7, sent_at=103.0)  # pushes both points
    assert book.must_stop(107.9) == []
    assert book.must_stop(108.0) == ["p"]
    assert book.must_stop(108.5) == []  # reported once
    assert not book.may_start("p", 108.1)
    book.renewed("p", 7, sent_at=108.2)  # too late: self-fencing has begun
    assert book.must_kill(110.9) == []
    assert book.must_kill(111.0) == ["p"]
    assert book.expires_in("p", 111.0) == pytest.approx(2.0)
    assert book.lost("p") is not None and book.token("p") is None


def test_renewal_of_another_token_is_ignored() -> None:
    book = LeaseBook(4)
    book.acquired("p", 2, sent_at=0.0)
    book.renewed("p", 1, sent_at=1.5)
    assert book.must_stop(2.0) == ["p"]


def test_fractions_are_checked() -> None:
    with pytest.raises(ValueError):
        LeaseBook(10, stop_fraction=0.9, kill_fraction=0.8)
