"""Encrypt secrets stored in the database (page access tokens).

AES-256-GCM with keys from FIELD_ENCRYPTION_KEYS: the first key encrypts,
every key decrypts, so keys rotate by putting a new one first and keeping
the old ones until `needs_reencryption` finds no value using them. A stored
value reads `v1.KEY_ID.NONCE_AND_CIPHERTEXT`, the key id being a short hash
of the key, never the key. Associated data binds a value to its row, so a
ciphertext copied to another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

VERSION = "v1"
NONCE_BYTES = 12


class SecretDecryptionError(Exception):
    """A stored secret that no configured key can open."""


def encrypt(plaintext: str, *, associated_data: str) -> str:
    """Encrypt a secret with the first configured key."""
    key_id, key = _keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(
        nonce, plaintext.encode(), associated_data.encode()
    )
    return f"{VERSION}.{key_id}.{_b64encode(nonce + sealed)}"


def decrypt(stored: str, *, associated_data: str) -> str:
    """Decrypt a stored secret with whichever configured key sealed it."""
    _version, key_id, body = _split(stored)
    key = dict(_keys()).get(key_id)
    if key is None:
        raise SecretDecryptionError(f"no configured key has id {key_id}")
    sealed = _b64decode(body)
    try:
        plaintext = AESGCM(key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data.encode()
        )
    except InvalidTag:
        raise SecretDecryptionError("the secret does not match its key") from None
    return plaintext.decode()


def needs_reencryption(stored: str) -> bool:
    """Whether a stored secret was sealed with a key other than the first."""
    return _split(stored)[1] != _keys()[0][0]


def secret_hint(secret: str) -> str:
    """Return the few characters shown in place of a secret: its end."""
    return "…" + secret[-4:] if len(secret) >= 16 else "…"


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise SecretDecryptionError("not a stored secret of a known version")
    return parts[0], parts[1], parts[2]


def _keys() -> list[tuple[str, bytes]]:
    return _parse_keys(tuple(settings.FIELD_ENCRYPTION_KEYS))


@lru_cache(maxsize=4)
def _parse_keys(encoded: tuple[str, ...]) -> list[tuple[str, bytes]]:
    if not encoded:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds no key")
    keys = []
    for position, text in enumerate(encoded, start=1):
        try:
            key = _b64decode(text)
        except SecretDecryptionError:
            key = b""
        if len(key) != 32:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not 32 bytes "
                "of base64url"
            )
        keys.append((hashlib.sha256(b"key-id:" + key).hexdigest()[:8], key))
    return keys


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SecretDecryptionError("malformed base64") from None
