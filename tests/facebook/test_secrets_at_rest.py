"""Secrets at rest: AES-256-GCM, bound to their row, with key rotation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway.secrets_at_rest import (
    SecretDecryptionError,
    decrypt,
    encrypt,
    needs_reencryption,
)

OLD_KEY = base64.urlsafe_b64encode(b"o" * 32).decode().rstrip("=")
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")


def test_a_secret_round_trips_and_is_not_stored_in_clear(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = encrypt("EAAGtoken123", associated_data="facebook-page:1")

    assert "EAAGtoken123" not in sealed
    assert sealed.startswith("v1.")
    assert decrypt(sealed, associated_data="facebook-page:1") == "EAAGtoken123"
    assert encrypt("EAAGtoken123", associated_data="facebook-page:1") != sealed


def test_keys_rotate_with_the_new_key_first(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = encrypt("EAAGtoken123", associated_data="facebook-page:1")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    assert decrypt(sealed, associated_data="facebook-page:1") == "EAAGtoken123"
    assert needs_reencryption(sealed)
    resealed = encrypt("EAAGtoken123", associated_data="facebook-page:1")
    assert not needs_reencryption(resealed)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(SecretDecryptionError, match="no configured key"):
        decrypt(sealed, associated_data="facebook-page:1")


def test_a_secret_moved_to_another_row_does_not_open(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = encrypt("EAAGtoken123", associated_data="facebook-page:1")

    with pytest.raises(SecretDecryptionError):
        decrypt(sealed, associated_data="facebook-page:2")


def test_a_tampered_secret_does_not_open(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    sealed = encrypt("EAAGtoken123", associated_data="facebook-page:1")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]

    with pytest.raises(SecretDecryptionError):
        decrypt(flipped, associated_data="facebook-page:1")


def test_a_short_key_is_a_configuration_error(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = ["c2hvcnQ"]

    with pytest.raises(ImproperlyConfigured, match="key 1 is not 32 bytes"):
        encrypt("x", associated_data="y")
