"""DTLS-SRTP (RFC 5763/5764) over pyOpenSSL memory BIOs, sans-IO.

A :class:`DtlsEndpoint` is fed datagrams with :meth:`DtlsEndpoint.receive` and hands back
the datagrams to send with :meth:`DtlsEndpoint.datagrams_to_send`; retransmission is driven
by :meth:`next_timeout` / :meth:`handle_timeout` with explicit ``now`` values (any monotonic
clock, e.g. ``trio.current_time()``; note that OpenSSL also checks its own wall clock
before retransmitting, so a timeout fires only once the real time has elapsed too).

The peer is authenticated by the sha-256 fingerprint of its (self-signed) certificate, as
given in its SDP; a mismatch is a fatal :class:`rtp.errors.DtlsError`.

pyOpenSSL facts this relies on (see DESIGN.md): DTLS 1.2 only; ``OP_NO_QUERY_MTU`` needs
``set_ciphertext_mtu``; a ``Context`` must not be changed after it made a ``Connection``, so
each :class:`Certificate` builds its server and client contexts once, up front.
"""

from __future__ import annotations

import datetime
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from pylibsrtp import Policy

from .errors import DtlsError

__all__ = ["MTU", "SRTP_PROFILES", "Certificate", "DtlsEndpoint", "SrtpKeys", "fingerprint_of"]

#: Largest DTLS datagram we emit (ciphertext MTU handed to OpenSSL).
MTU = 1200

_SRTP_PROFILES_OFFER = b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"

#: OpenSSL SRTP profile name -> (pylibsrtp profile constant, master key length, salt length).
SRTP_PROFILES: dict[bytes, tuple[int, int, int]] = {
    b"SRTP_AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    b"SRTP_AES128_CM_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
}

_DTLS_RECORD_HEADER = 13
_ALERT = 21


def fingerprint_of(cert: x509.Certificate) -> str:
    """sha-256 fingerprint of a certificate as ``"AB:CD:…"`` (upper-case hex, colons)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _normalize_fingerprint(value: str) -> str:
    """Accept ``"AB:CD…"``, ``"ab:cd…"`` or ``"sha-256 AB:CD…"``; return ``"AB:CD…"``."""
    value = value.strip()
    if value.lower().startswith("sha-256"):
        value = value[7:].strip()
    return value.upper()


@dataclass(frozen=True)
class SrtpKeys:
    """SRTP master keys derived from a DTLS handshake.

    ``profile`` is a pylibsrtp ``Policy.SRTP_PROFILE_*`` constant; ``tx_*`` is what this
    endpoint protects (sends) with, ``rx_*`` what it unprotects (receives) with.
    """

    profile: int
    tx_key: bytes
    tx_salt: bytes
    rx_key: bytes
    rx_salt: bytes


def _verify_callback(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """Accept any (self-signed) certificate chain; the leaf is checked by fingerprint.

    The endpoint attached to the connection (``set_app_data``) compares the leaf's sha-256
    fingerprint with the one from the SDP, so a mismatch aborts the handshake early with
    an alert.
    """
    if depth != 0:
        return True
    endpoint = conn.get_app_data()
    if endpoint is None:
        return False
    try:
        actual = fingerprint_of(cert.to_cryptography())
    except Exception:
        return False
    return bool(endpoint._fingerprint_matches(actual))


class Certificate:
    """A self-signed ECDSA P-256 certificate with its DTLS server and client contexts.

    Create with :meth:`generate`. One instance can serve any number of endpoints.
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert
        #: sha-256 fingerprint, ``"AB:CD:…"``.
        self.fingerprint: str = fingerprint_of(cert)
        self._contexts: dict[str, SSL.Context] = {
            "server": self._make_context(),
            "client": self._make_context(),
        }

    @classmethod
    def generate(cls, common_name: str = "trio-core", days: int = 30) -> Certificate:
        """Generate a fresh ECDSA P-256 key and a self-signed certificate valid for ``days``."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(os.urandom(8), "big") >> 1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate (cryptography object)."""
        return self._cert

    def pem(self) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) — for tests and persistence."""
        return (
            self._cert.public_bytes(serialization.Encoding.PEM),
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def _make_context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)  # idle connections keep no record buffers
        ctx.use_certificate(self._cert)
        ctx.use_privatekey(self._key)
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_callback)
        ctx.set_tlsext_use_srtp(_SRTP_PROFILES_OFFER)
        return ctx

    def context(self, role: Literal["server", "client"]) -> SSL.Context:
        """The prebuilt OpenSSL context for ``role`` (never modify it)."""
        return self._contexts[role]


def _split_records(data: bytes) -> list[bytes]:
    """Split a byte stream of DTLS records (what the memory BIO accumulated) into records."""
    records: list[bytes] = []
    pos = 0
    while pos + _DTLS_RECORD_HEADER <= len(data):
        (length,) = struct.unpack_from("!H", data, pos + 11)
        end = pos + _DTLS_RECORD_HEADER + length
        records.append(data[pos:end])
        pos = end
    if pos < len(data):  # cannot happen with OpenSSL output; keep the bytes anyway
        records.append(data[pos:])
    return records


def _pack_datagrams(records: list[bytes], mtu: int = MTU) -> list[bytes]:
    """Pack whole records into datagrams of at most ``mtu`` bytes (a bigger record goes alone)."""
    out: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > mtu:
            out.append(current)
            current = b""
        current += record
    if current:
        out.append(current)
    return out


class DtlsEndpoint:
    """One DTLS-SRTP association (sans-IO).

    Args:
        certificate: our certificate (its prebuilt context for ``role`` is used).
        remote_fingerprint: the peer's sha-256 fingerprint from its SDP (``"AB:CD:…"``).
        role: ``"server"`` (we answered ``a=setup:passive``) or ``"client"``.

    Use: feed every DTLS datagram to :meth:`receive`, send what :meth:`datagrams_to_send`
    returns, call :meth:`handle_timeout` when :meth:`next_timeout` passes. A client calls
    :meth:`start` first. Once :attr:`handshake_complete`, :meth:`srtp_keys` gives the keys.
    Fatal errors raise :class:`DtlsError` once and leave the endpoint :attr:`closed`; later
    input is ignored.
    """

    def __init__(
        self,
        certificate: Certificate,
        remote_fingerprint: str,
        role: Literal["server", "client"] = "server",
    ) -> None:
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self.role = role
        self.certificate = certificate
        self.remote_fingerprint = _normalize_fingerprint(remote_fingerprint)
        self.handshake_complete = False
        self.closed = False
        #: Why the endpoint closed/failed (None while open).
        self.close_reason: str | None = None
        self._conn = SSL.Connection(certificate.context(role), None)
        self._conn.set_app_data(self)
        self._conn.set_ciphertext_mtu(MTU)
        if role == "server":
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
        self._outgoing: list[bytes] = []
        self._deadline: float | None = None
        self._started = role == "server"
        self._keys: SrtpKeys | None = None
        #: True once :meth:`release` freed the OpenSSL connection.
        self.released = False
        self._profile_name: bytes | None = None
        #: the close_notify record made by :meth:`release`, sent by :meth:`close`
        self._close_notify = b""

    # -- public API -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Client role: emit the ClientHello. A no-op for the server role or when started."""
        if self._started or self.closed:
            return
        self._started = True
        self._step(now)

    def receive(self, data: bytes, now: float) -> None:
        """Process one incoming DTLS datagram received at ``now``.

        Raises DtlsError on a fatal failure (alert, fingerprint mismatch); the endpoint is
        then closed. Garbage that OpenSSL silently discards raises nothing.
        """
        if self.closed or not data or self.released:
            return
        self._started = True
        try:
            self._conn.bio_write(data)
        except SSL.Error as exc:
            self._fail(f"bio_write: {exc}")
        self._step(now)

    def datagrams_to_send(self) -> list[bytes]:
        """The datagrams produced since the last call (each at most ``MTU`` bytes)."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_timeout(self) -> float | None:
        """Absolute time (the caller's clock) of the next retransmission, or None."""
        return None if self.closed else self._deadline

    def handle_timeout(self, now: float) -> None:
        """Retransmit the last flight if the timer expired. Raises DtlsError if OpenSSL gives up."""
        if self.closed or self._deadline is None or now < self._deadline:
            return
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"handshake timed out: {exc}")
        self._collect()
        self._update_deadline(now)

    def close(self) -> None:
        """Send close_notify (if the handshake completed) and mark the endpoint closed.

        After :meth:`release` the close_notify record made at release time is sent (see
        there), so a released endpoint still tells its peer."""
        if self.closed:
            return
        if self.handshake_complete and not self.released:
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
            self._collect()
        elif self.released and self._close_notify:
            self._outgoing.append(self._close_notify)
            self._close_notify = b""
        self._set_closed("closed locally")

    def release(self) -> None:
        """Free the OpenSSL connection of a completed handshake (an idle DTLS connection
        costs ~80 KiB; the SRTP keys are kept). Call it once the peer can no longer need a
        retransmission of our last flight (e.g. after SRTP flowed for a few seconds): later
        DTLS input is ignored.

        The close_notify alert is made now (OpenSSL's ``SSL_shutdown`` writes the encrypted
        record into the memory BIO) and kept (~40 bytes), and :meth:`close` sends it later:
        nothing else is ever sent on this association after the handshake (SRTP keys come
        from it, but SRTP is not DTLS), so the record's epoch and sequence number stay the
        next ones the peer expects.
        """
        if not self.handshake_complete or self.released or self.closed:
            return
        self._profile_name = self._conn.get_selected_srtp_profile() or None
        self._outgoing = []
        try:
            self._conn.shutdown()
        except SSL.Error:
            pass
        self._collect()
        self._close_notify = b"".join(self._outgoing)
        self._outgoing = []
        self._conn = None  # type: ignore[assignment]
        self._deadline = None
        self.released = True

    def srtp_keys(self) -> SrtpKeys:
        """SRTP keys from the completed handshake. Raises DtlsError before completion."""
        if self._keys is None:
            raise DtlsError("handshake not complete")
        return self._keys

    @property
    def srtp_profile(self) -> bytes | None:
        """The negotiated OpenSSL SRTP profile name (e.g. ``b"SRTP_AEAD_AES_128_GCM"``)."""
        if not self.handshake_complete:
            return None
        if self.released:
            return self._profile_name
        return self._conn.get_selected_srtp_profile() or None

    # -- internals --------------------------------------------------------------------------

    def _fingerprint_matches(self, actual: str) -> bool:
        return hmac.compare_digest(actual.upper(), self.remote_fingerprint)

    def _set_closed(self, reason: str) -> None:
        self.closed = True
        self._deadline = None
        if self.close_reason is None:
            self.close_reason = reason

    def _fail(self, reason: str) -> None:
        """Collect any alert OpenSSL queued, close, and raise DtlsError."""
        self._collect()
        self._set_closed(reason)
        raise DtlsError(reason)

    def _step(self, now: float) -> None:
        if not self.handshake_complete:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError:
                self._collect()
                self._set_closed("close_notify during handshake")
                return
            except SSL.Error as exc:
                self._fail(f"handshake failed: {_describe(exc)}")
            else:
                self._on_handshake_complete()
        if self.handshake_complete and not self.closed:
            self._drain_application_data()
        self._collect()
        self._update_deadline(now)

    def _drain_application_data(self) -> None:
        """Let OpenSSL process post-handshake records (alerts, retransmitted Finished)."""
        while True:
            try:
                self._conn.recv(65536)  # no data channel: application data is dropped
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self._collect()
                self._set_closed("close_notify")
                return
            except SSL.Error as exc:
                self._fail(f"DTLS error: {_describe(exc)}")

    def _on_handshake_complete(self) -> None:
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None or not self._fingerprint_matches(fingerprint_of(cert)):
            self._fail("peer certificate does not match the remote fingerprint")
        name = self._conn.get_selected_srtp_profile()
        if name not in SRTP_PROFILES:
            self._fail(f"no SRTP profile negotiated ({name!r})")
        profile, key_len, salt_len = SRTP_PROFILES[name]
        material = self._conn.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len)
        )
        client_key = material[:key_len]
        server_key = material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        if self.role == "server":
            self._keys = SrtpKeys(profile, server_key, server_salt, client_key, client_salt)
        else:
            self._keys = SrtpKeys(profile, client_key, client_salt, server_key, server_salt)
        self.handshake_complete = True

    def _collect(self) -> None:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._conn.bio_read(65536)
            except SSL.WantReadError:
                break
            except SSL.Error:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if chunks:
            self._outgoing.extend(_pack_datagrams(_split_records(b"".join(chunks))))

    def _update_deadline(self, now: float) -> None:
        if self.closed:
            self._deadline = None
            return
        remaining: Any = self._conn.DTLSv1_get_timeout()
        self._deadline = None if remaining is None else now + float(remaining)


def _describe(exc: SSL.Error) -> str:
    """A short text for an OpenSSL error (its reason strings, else repr)."""
    try:
        parts = [str(item[2]) for item in exc.args[0] if isinstance(item, tuple) and len(item) > 2]
    except Exception:
        parts = []
    return ", ".join(parts) or repr(exc)
