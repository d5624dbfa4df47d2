"""IceClient: the controlling, full-agent side of ICE toward one ICE-lite peer (sans-IO).

Used by an edge node pulling a process from its owner (:mod:`rtp.upstream`): the owner is an
ICE-lite WHEP server with one host candidate, so there is exactly one candidate pair and
nothing to gather or prioritise. The client sends Binding requests (USERNAME
``remote_ufrag:local_ufrag``, PRIORITY, ICE-CONTROLLING with a tie-breaker, USE-CANDIDATE —
aggressive nomination — and MESSAGE-INTEGRITY keyed with the remote ``ice-pwd``) and checks
the responses (transaction id, integrity, FINGERPRINT).

Timing: until the first success, a request every :data:`RTO` s doubling up to
:data:`MAX_RTO` (RFC 8445 pacing, RFC 5389 retransmission); after it, a consent check every
:data:`CONSENT_INTERVAL` s ± 20 % (RFC 7675), each retransmitted while unanswered. Consent
fails (``failed``) when no valid response arrived for ``consent_timeout`` s (counted from the
start before the first success).

Pure: :meth:`poll` returns the datagrams due at ``now``, :meth:`next_timeout` when to call it
again, :meth:`handle_response` takes a STUN message. Malformed or foreign responses are
counted in ``dropped`` and ignored. No I/O, no cancellation concerns.
"""

from __future__ import annotations

import collections
import os
import random

from .errors import ParseError
from .stun import build_binding_request, check_binding_response

__all__ = ["CONSENT_INTERVAL", "IceClient"]

RTO = 0.1
MAX_RTO = 1.6
CONSENT_INTERVAL = 4.0
#: transactions remembered (older responses are dropped as unknown)
MAX_PENDING = 16


class IceClient:
    """Connectivity checks toward one remote ICE-lite address (see the module docstring)."""

    def __init__(self, local_ufrag: str, remote_ufrag: str, remote_pwd: str, *,
                 now: float, consent_timeout: float = 30.0) -> None:
        self.local_ufrag = local_ufrag
        self.remote_ufrag = remote_ufrag
        self.remote_pwd = remote_pwd
        self.consent_timeout = consent_timeout
        self.tie_breaker = int.from_bytes(os.urandom(8), "big")
        self.started = now
        #: ``now`` of the first / latest valid response
        self.connected_at: float | None = None
        self.last_success: float | None = None
        #: the address the remote saw us at (XOR-MAPPED-ADDRESS of the latest response)
        self.mapped: tuple[str, int] | None = None
        self.requests = 0
        self.responses = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._pending: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._next = now
        self._rto = RTO

    @property
    def connected(self) -> bool:
        return self.connected_at is not None

    def failed(self, now: float) -> bool:
        """True when consent is lost (no valid response for ``consent_timeout`` s)."""
        since = self.last_success if self.last_success is not None else self.started
        return now - since > self.consent_timeout

    def next_timeout(self) -> float:
        return self._next

    def poll(self, now: float) -> list[bytes]:
        """The Binding request due at ``now`` (a list of zero or one datagram)."""
        if now < self._next:
            return []
        txid = os.urandom(12)
        self._pending[txid] = now
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        self.requests += 1
        if self.connected_at is None or self._awaiting_consent(now):
            self._next = now + self._rto
            self._rto = min(self._rto * 2, MAX_RTO)
        else:
            self._next = now + CONSENT_INTERVAL * random.uniform(0.8, 1.2)
        return [build_binding_request(self.local_ufrag, self.remote_ufrag, self.remote_pwd,
                                      use_candidate=True, transaction_id=txid,
                                      tie_breaker=self.tie_breaker)]

    def _awaiting_consent(self, now: float) -> bool:
        """A consent check is out and unanswered: retransmit it."""
        return self.last_success is not None and now - self.last_success > CONSENT_INTERVAL * 1.2

    def handle_response(self, data: bytes, now: float) -> bool:
        """A STUN message from the remote: True when it was a valid response to one of our
        requests (consent refreshed)."""
        from .stun import _parse

        try:
            msg = _parse(data)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return False
        txid = msg.transaction_id
        if txid not in self._pending:
            self.dropped["unknown-transaction"] += 1
            return False
        try:
            self.mapped = check_binding_response(data, txid, self.remote_pwd)
        except ParseError as exc:
            self.dropped[exc.reason] += 1
            return False
        del self._pending[txid]
        self.responses += 1
        self.last_success = now
        self._rto = RTO
        if self.connected_at is None:
            self.connected_at = now
            self._next = now + CONSENT_INTERVAL * random.uniform(0.8, 1.2)
        elif self._next < now + 0.5:  # a retransmitted consent check was answered
            self._next = now + CONSENT_INTERVAL * random.uniform(0.8, 1.2)
        return True
