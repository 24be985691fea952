"""Chat tokens: sealed, authenticated, expiring, and rotatable."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from adapters.web.tokens import (
    CHANNEL_PREFIX,
    ChatToken,
    InvalidChatToken,
    chat_channels_for,
    issue_chat_token,
    read_chat_token,
    seal_chat_token,
    token_expiry,
)

OLD_KEY = base64.urlsafe_b64encode(b"o" * 32).decode().rstrip("=")
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")
CONVERSATION = uuid.UUID("12345678-1234-5678-1234-567812345678")


def now() -> datetime:
    return datetime.now(UTC)


def issue(issued_at: datetime | None = None) -> tuple[str, datetime]:
    """Issue a token as a new session does; return it and its expiry."""
    expires_at = token_expiry(issued_at or now())
    return issue_chat_token(CONVERSATION, 7, expires_at), expires_at


def test_a_token_carries_its_conversation_bot_and_expiry() -> None:
    token, expires_at = issue()
    opened = read_chat_token(token)
    assert opened == ChatToken(CONVERSATION, 7, expires_at)
    assert str(CONVERSATION) not in token and CONVERSATION.hex not in token


def test_a_token_is_a_valid_pusher_channel_suffix() -> None:
    token, _ = issue()
    channel = CHANNEL_PREFIX + token
    assert len(channel) <= 164
    assert all(c.isalnum() or c in "_-" for c in token)


def test_the_same_conversation_always_gets_the_same_token() -> None:
    created = now()
    first, expires_at = issue(created)
    again, _ = issue(created)
    assert first == again
    assert chat_channels_for(CONVERSATION, 7, expires_at) == [CHANNEL_PREFIX + first]


@pytest.mark.parametrize("position", [0, 10, 40, 86])
def test_a_tampered_token_is_refused(position: int) -> None:
    token, _ = issue()
    replacement = "A" if token[position] != "A" else "B"
    tampered = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(InvalidChatToken):
        read_chat_token(tampered)


@pytest.mark.parametrize("text", ["", "abc", "x" * 87, "=" * 87, "é" * 87])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(InvalidChatToken):
        read_chat_token(text)


def test_a_truncated_token_is_refused() -> None:
    token, _ = issue()
    with pytest.raises(InvalidChatToken):
        read_chat_token(token[:-1])
    with pytest.raises(InvalidChatToken):
        read_chat_token(token + "A")


def test_an_expired_token_is_refused() -> None:
    token, expires_at = issue()
    with pytest.raises(InvalidChatToken, match="expired"):
        read_chat_token(token, now=expires_at + timedelta(seconds=1))


def test_keys_rotate_the_first_seals_all_open() -> None:
    with override_settings(CHAT_TOKEN_KEYS=[OLD_KEY]):
        old_token, _ = issue()
    with override_settings(CHAT_TOKEN_KEYS=[NEW_KEY, OLD_KEY]):
        assert read_chat_token(old_token).bot_id == 7
        new_token, _ = issue()
        assert len(chat_channels_for(CONVERSATION, 7, token_expiry(now()))) == 2
    assert new_token != old_token
    with override_settings(CHAT_TOKEN_KEYS=[NEW_KEY]), pytest.raises(
        InvalidChatToken, match="unknown key"
    ):
        read_chat_token(old_token)


def test_a_token_sealed_with_a_foreign_key_is_refused() -> None:
    with override_settings(CHAT_TOKEN_KEYS=[OLD_KEY]):
        token = seal_chat_token(
            ChatToken(CONVERSATION, 7, now() + timedelta(hours=1))
        )
    with pytest.raises(InvalidChatToken):
        read_chat_token(token)
