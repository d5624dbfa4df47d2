"""trio_core.observability.webrtc_viewers: a viewer's public session id is a stable hash of
its (secret) WHEP resource id, never the id itself."""

from __future__ import annotations

from trio_core.observability.webrtc_viewers import session_id


def test_session_ids_are_stable_short_and_reveal_nothing() -> None:
    one = session_id("peer-secret-1")
    assert one == session_id("peer-secret-1") and len(one) == 22
    assert int(one, 16) >= 0 and "secret" not in one
    assert session_id("peer-secret-2") != one
