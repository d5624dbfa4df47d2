"""The Python side of ``rtp/srtp_gcm.h``: the C fan-out's AES-GCM SRTP without libsrtp.

:func:`install` hands libcrypto's EVP functions (from the libcrypto Python's own ``ssl``
module loaded, found in ``/proc/self/maps``; else the one the dynamic loader finds) to the C
extension once; :func:`session_keys` derives a viewer's SRTP session key and salt from the
DTLS-SRTP master key and salt (RFC 3711 §4.3's AES-CM PRF, labels 0 and 2, as libsrtp runs it
for AEAD_AES_128_GCM: the 12-byte master salt zero-padded to 14). A viewer made with them
(``engine.viewer(ctx, key, salt)``) protects its RTP byte for byte as libsrtp would
(``tests/unit/rtp/test_srtp_gcm.py``).

Everything here is synchronous and runs once per process (install) or once per viewer (keys).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

__all__ = ["FUNCTIONS", "install", "libcrypto_path", "session_keys"]

log = logging.getLogger(__name__)

#: libcrypto's functions srtp_gcm.h calls, in gcm_install's order
FUNCTIONS = ("EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free", "EVP_aes_128_gcm",
             "EVP_CipherInit_ex", "EVP_CipherUpdate", "EVP_CipherFinal_ex",
             "EVP_CIPHER_CTX_ctrl")
KEY_SIZE = 16
SALT_SIZE = 12


def libcrypto_path() -> str | None:
    """The libcrypto already mapped into this process (Python's ``ssl``/``hashlib``), else the
    one the dynamic loader would load, else None."""
    import _hashlib  # noqa: F401  (maps libcrypto; loaded at start anyway)

    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1] if line.count(" ") >= 5 else ""
                if "/libcrypto.so" in path:
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("crypto")


def _addresses() -> tuple[int, ...] | None:
    path = libcrypto_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        found = tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0
                      for name in FUNCTIONS)
    except (AttributeError, OSError):
        return None
    return found if all(found) else None


def install(native: Any) -> bool:
    """Give the C extension ``native`` libcrypto's functions (idempotent); False when they
    could not be found (viewers then stay on libsrtp)."""
    if native.gcm_installed():
        return True
    found = _addresses()
    if found is None:
        log.info("libcrypto's EVP functions not found: the fan-out's RTP stays on libsrtp")
        return False
    native.gcm_install(*found)
    return True


def session_keys(master_key: bytes, master_salt: bytes) -> tuple[bytes, bytes]:
    """The SRTP session encryption key (16 bytes) and salt (12 bytes) of AEAD_AES_128_GCM."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(master_key) != KEY_SIZE or len(master_salt) != SALT_SIZE:
        raise ValueError("AEAD_AES_128_GCM has a 16-byte master key and a 12-byte master salt")
    encryptor = Cipher(algorithms.AES(master_key), modes.ECB()).encryptor()
    base = master_salt + bytes(16 - SALT_SIZE)  # the 112-bit salt field, then the block counter

    def block(label: int) -> bytes:
        x = bytearray(base)
        x[7] ^= label
        return encryptor.update(bytes(x))

    return block(0x00)[:KEY_SIZE], block(0x02)[:SALT_SIZE]
