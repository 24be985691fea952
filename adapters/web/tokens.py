"""Chat tokens: a conversation, its bot and an expiry, sealed with AES-256-GCM.

A token is the base64url encoding of

    version (1 byte) | key id (4) | nonce (12) | ciphertext + tag (48)

where the plaintext is the conversation's UUID, the bot's id and the expiry
in Unix seconds. The version and key id are authenticated as associated
data. The key id names which of ``CHAT_TOKEN_KEYS`` sealed the token, so
that keys can be rotated: the first key seals, all of them open.

The nonce is derived from the plaintext (a keyed hash), which makes sealing
deterministic: the publisher can recompute a conversation's token, and so
its Pusher channel, without the token ever being stored. It needs the
token's expiry for that, which is stored with the conversation: computed
again from today's CHAT_TOKEN_TTL, it would miss the chats begun under
another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

VERSION = 1
KEY_ID_SIZE = 4
NONCE_SIZE = 12
PLAINTEXT = struct.Struct(">16sQQ")
HEADER_SIZE = 1 + KEY_ID_SIZE
TOKEN_SIZE = HEADER_SIZE + NONCE_SIZE + PLAINTEXT.size + 16
CHANNEL_PREFIX = "private-chat-"


class InvalidChatToken(Exception):
    """A token that cannot be used; the reason is for logs, not for clients."""


@dataclass(frozen=True)
class ChatToken:
    conversation_id: uuid.UUID
    bot_id: int
    expires_at: datetime


@dataclass(frozen=True)
class TokenKey:
    """One configured key and the subkeys derived from it."""

    key_id: bytes
    cipher: AESGCM
    nonce_key: bytes


def _subkey(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


def _decode_key(text: str) -> bytes:
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(key) != 32:
        raise ValueError("each CHAT_TOKEN_KEYS entry must be 32 bytes, base64url")
    return key


@lru_cache(maxsize=8)
def _load_keys(configured: tuple[str, ...]) -> tuple[TokenKey, ...]:
    keys = []
    for text in configured:
        key = _decode_key(text)
        keys.append(
            TokenKey(
                key_id=_subkey(key, "chat-token key id")[:KEY_ID_SIZE],
                cipher=AESGCM(_subkey(key, "chat-token encryption")),
                nonce_key=_subkey(key, "chat-token nonce"),
            )
        )
    if not keys:
        raise ValueError("CHAT_TOKEN_KEYS is empty")
    return tuple(keys)


def token_keys() -> tuple[TokenKey, ...]:
    return _load_keys(tuple(settings.CHAT_TOKEN_KEYS))


def token_expiry(issued_at: datetime) -> datetime:
    """Return when a token issued at that time expires, in whole seconds."""
    issued = int(issued_at.timestamp())
    return datetime.fromtimestamp(issued + settings.CHAT_TOKEN_TTL, tz=UTC)


def chat_channel(token: str) -> str:
    return CHANNEL_PREFIX + token


def seal_chat_token(token: ChatToken, key: TokenKey | None = None) -> str:
    """Encrypt a token's contents with the given key, by default the first."""
    key = key or token_keys()[0]
    plaintext = PLAINTEXT.pack(
        token.conversation_id.bytes,
        token.bot_id,
        int(token.expires_at.timestamp()),
    )
    header = bytes([VERSION]) + key.key_id
    nonce = hmac.new(key.nonce_key, plaintext, hashlib.sha256).digest()[:NONCE_SIZE]
    sealed = header + nonce + key.cipher.encrypt(nonce, plaintext, header)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def issue_chat_token(
    conversation_id: uuid.UUID, bot_id: int, expires_at: datetime
) -> str:
    """Return the token of a conversation that expires at that time."""
    return seal_chat_token(ChatToken(conversation_id, bot_id, expires_at))


def chat_channels_for(
    conversation_id: uuid.UUID, bot_id: int, expires_at: datetime
) -> list[str]:
    """Return the channel of a conversation under each configured key.

    While keys rotate, a chat may hold a token sealed by any of them.
    """
    token = ChatToken(conversation_id, bot_id, expires_at)
    return [chat_channel(seal_chat_token(token, key)) for key in token_keys()]


def read_chat_token(text: str, now: datetime | None = None) -> ChatToken:
    """Open and check a token; raise InvalidChatToken when it is not usable."""
    raw = _decode_token(text)
    header, nonce = raw[:HEADER_SIZE], raw[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    key = _key_by_id(header[1:])
    try:
        plaintext = key.cipher.decrypt(nonce, raw[HEADER_SIZE + NONCE_SIZE :], header)
    except InvalidTag:
        raise InvalidChatToken("token does not authenticate") from None
    conversation, bot_id, expiry = PLAINTEXT.unpack(plaintext)
    token = ChatToken(
        uuid.UUID(bytes=conversation),
        bot_id,
        datetime.fromtimestamp(expiry, tz=UTC),
    )
    if token.expires_at <= (now or datetime.now(UTC)):
        raise InvalidChatToken("token expired")
    return token


def _decode_token(text: str) -> bytes:
    if len(text) != (TOKEN_SIZE * 4 + 2) // 3:
        raise InvalidChatToken("token has the wrong length")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidChatToken("token is not base64url") from None
    if len(raw) != TOKEN_SIZE or raw[0] != VERSION:
        raise InvalidChatToken("token has an unknown format")
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        raise InvalidChatToken("token is not in canonical form")
    return raw


def _key_by_id(key_id: bytes) -> TokenKey:
    for key in token_keys():
        if hmac.compare_digest(key.key_id, key_id):
            return key
    raise InvalidChatToken("token sealed by an unknown key")


def seconds_left(token: ChatToken, now: datetime | None = None) -> float:
    remaining = token.expires_at - (now or datetime.now(UTC))
    return max(remaining, timedelta(0)).total_seconds()
