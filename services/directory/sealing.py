"""Field-level encryption of personal data at rest, and keyed hashes to find a person by phone.

Names, phones, e-mail addresses, WeChat openids and rooms are stored *sealed*:
AES-256-GCM with a random 96-bit nonce, the field's name as associated data (a
phone's ciphertext cannot be passed off as a name's), stored as BSON binary.
Lookups go through a keyed hash (HMAC-SHA256) of the normalised value: the
database holds no plaintext and no unkeyed hash a dictionary of 10^9 mobile
numbers could reverse.

Both keys are derived with HKDF from one master key, ``HUISHENG_DATA_KEY``
(32 bytes, base64); when it is unset the master key is derived from
``HUISHENG_SECRET`` (development only: rotating the secret then loses the data).

>>> sealer = Sealer(bytes(range(32)))
>>> sealed = sealer.seal("phone", "13800001234")
>>> isinstance(sealed, bytes), b"13800001234" in sealed, b"00001234" in sealed
(True, False, False)
>>> sealer.open("phone", sealed)
'13800001234'
>>> sealer.open("phone", None) is None
True
>>> sealer.lookup_hash("phone", "13800001234") == sealer.lookup_hash("phone", "13800001234")
True
>>> len(sealer.lookup_hash("phone", "13800001234"))
64
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nameko.extensions import DependencyProvider

from kernel.config import Settings, settings_of

VERSION = b"\x01"  # the first byte of every sealed value: the scheme, so keys or schemes can change later
NONCE_BYTES = 12


class SealingError(Exception):
    """A sealed value that does not open with this key (tampered with, or sealed under another key)."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"huisheng.directory", info=info).derive(master)


def master_key(settings: Settings) -> bytes:
    """The 32-byte master key: ``HUISHENG_DATA_KEY`` decoded, or derived from the secret when unset.

    >>> len(master_key(Settings(secret="s"))), master_key(Settings(secret="s")) == master_key(Settings(secret="t"))
    (32, False)
    >>> key = base64.b64encode(bytes(32)).decode()
    >>> master_key(Settings(data_key=key)) == bytes(32)
    True
    >>> master_key(Settings(data_key="c2hvcnQ="))
    Traceback (most recent call last):
    ...
    ValueError: HUISHENG_DATA_KEY must be 32 bytes in base64, not 5 bytes
    """
    if settings.data_key:
        try:
            key = base64.b64decode(settings.data_key, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("HUISHENG_DATA_KEY must be base64") from error
        if len(key) != 32:
            raise ValueError(f"HUISHENG_DATA_KEY must be 32 bytes in base64, not {len(key)} bytes")
        return key
    return _derive(settings.secret.encode("utf-8"), b"huisheng data key from secret")


class Sealer:
    """Seals and opens fields with AES-GCM; hashes lookup values with HMAC-SHA256."""

    def __init__(self, master: bytes):
        if len(master) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(_derive(master, b"huisheng field encryption v1"))
        self._hash_key = _derive(master, b"huisheng lookup hash v1")

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        return cls(master_key(settings))

    def seal(self, field: str, value: str | None) -> bytes | None:
        """``value`` encrypted for ``field`` (None stays None: an absent value is not a secret)."""
        if value is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, value.encode("utf-8"), field.encode("utf-8"))

    def open(self, field: str, sealed: bytes | None) -> str | None:
        """The plaintext of a value :meth:`seal` made for the same ``field``.

        >>> sealer = Sealer(bytes(32))
        >>> sealer.open("name", sealer.seal("phone", "13800001234"))
        Traceback (most recent call last):
        ...
        services.directory.sealing.SealingError: a sealed name does not open with this key
        """
        if sealed is None:
            return None
        sealed = bytes(sealed)
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SealingError(f"a sealed {field} has an unknown format")
        nonce, ciphertext = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, field.encode("utf-8")).decode("utf-8")
        except InvalidTag as error:
            raise SealingError(f"a sealed {field} does not open with this key") from error

    def lookup_hash(self, kind: str, value: str) -> str:
        """A keyed hash of a normalised value, to find it by equality (hex, 64 characters)."""
        return hmac.new(self._hash_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


class Sealing(DependencyProvider):
    """Injects the container's :class:`Sealer`, built once from its settings (a bad key stops the start)."""

    sealer: Sealer | None = None

    def setup(self) -> None:
        self.sealer = Sealer.from_settings(settings_of(self.container.config))

    def get_dependency(self, worker_ctx) -> Sealer:
        return self.sealer
