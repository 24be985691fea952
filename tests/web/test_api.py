"""The bubble's HTTP API: sessions, channel auth, messages, and refusals."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from adapters.web.tokens import ChatToken, issue_chat_token, seal_chat_token
from storage.models import Bot, Conversation, Message
from tests.web.conftest import PAGE, call, start_session

pytestmark = pytest.mark.django_db(transaction=True)
SESSIONS = "/api/web/v1/sessions"
AUTH = "/api/web/v1/pusher/auth"
MESSAGES = "/api/web/v1/messages"
SOCKET_ID = "1234.5678"


def auth_form(channel: str, socket_id: str = SOCKET_ID) -> bytes:
    return f"socket_id={socket_id}&channel_name={channel}".encode()


async def post_auth(token: str | None, channel: str, **kwargs: object) -> object:
    return await call(
        "POST", AUTH, auth_form(channel), token=token,
        content_type="application/x-www-form-urlencoded", **kwargs,  # type: ignore[arg-type]
    )


def assert_error(answer: object, status: int) -> None:
    assert answer.status == status, answer.body  # type: ignore[attr-defined]
    error = answer.json()["error"]  # type: ignore[attr-defined]
    assert set(error) == {"code", "message"}


# Sessions.

async def test_a_session_hands_out_a_token_and_its_channel(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    assert session["channel"] == "private-chat-" + session["token"]
    expires_at = datetime.fromisoformat(session["expires_at"])
    expected = datetime.now(UTC) + timedelta(seconds=settings.CHAT_TOKEN_TTL)
    assert abs((expires_at - expected).total_seconds()) < 5
    assert session["pusher"] == {
        "key": settings.PUSHER_KEY, "cluster": "mt1", "wsHost": "gateway.test",
        "wsPort": 80, "wssPort": 80, "forceTLS": False,
    }
    conversation = await Conversation.objects.aget()
    assert conversation.channel == "web" and conversation.contact_id is None


async def test_an_allowed_page_gets_cors_headers(bot: Bot) -> None:
    answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    assert answer.status == 201
    assert answer.headers["access-control-allow-origin"] == PAGE


async def test_an_unknown_web_key_is_404(bot: Bot) -> None:
    assert_error(await call("POST", SESSIONS, {"bot": "no-such-key"}), 404)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"bot": 3}', b"{}"])
async def test_a_malformed_session_request_is_400(bot: Bot, body: bytes) -> None:
    assert_error(await call("POST", SESSIONS, body), 400)


async def test_an_oversized_body_is_413(bot: Bot) -> None:
    body = b'{"bot": "' + b"x" * 20_000 + b'"}'
    assert_error(await call("POST", SESSIONS, body), 413)
    assert_error(await call("POST", MESSAGES, body), 413)


async def test_a_disallowed_origin_is_403_without_cors_headers(bot: Bot) -> None:
    answer = await call("POST", SESSIONS, {"bot": bot.web_key},
                        origin="https://evil.example")
    assert_error(answer, 403)
    assert not [name for name in answer.headers if name.startswith("access-control")]
    assert await Conversation.objects.acount() == 0


async def test_an_empty_list_allows_only_the_gateways_own_pages(bot: Bot) -> None:
    bot.allowed_origins = []
    await bot.asave()
    assert_error(await call("POST", SESSIONS, {"bot": bot.web_key}), 403)
    with override_settings(ALLOWED_HOSTS=["gateway.test"]):
        await start_session(bot.web_key, origin="http://gateway.test")
    # An unknown host name is not the gateway's own page.
    answer = await call("POST", SESSIONS, {"bot": bot.web_key},
                        origin="http://gateway.test")
    assert_error(answer, 403)


async def test_a_wildcard_allows_any_page(bot: Bot) -> None:
    bot.allowed_origins = ["*"]
    await bot.asave()
    await start_session(bot.web_key, origin="https://anyone.example")


async def test_a_preflight_is_answered_only_for_allowed_origins(bot: Bot) -> None:
    headers = [(b"access-control-request-method", b"POST")]
    allowed = await call("OPTIONS", MESSAGES, origin=PAGE, headers=headers)
    assert allowed.status == 204
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert "Authorization" in allowed.headers["access-control-allow-headers"]
    refused = await call("OPTIONS", MESSAGES, origin="https://evil.example",
                         headers=headers)
    assert "access-control-allow-origin" not in refused.headers


async def test_other_methods_are_405(bot: Bot) -> None:
    assert_error(await call("GET", SESSIONS), 405)


# Channel authorization.

async def test_the_own_channel_is_signed(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    answer = await post_auth(session["token"], session["channel"])
    assert answer.status == 200  # type: ignore[attr-defined]
    signature = hmac.new(
        settings.PUSHER_SECRET.encode(),
        f"{SOCKET_ID}:{session['channel']}".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert answer.json() == {"auth": f"{settings.PUSHER_KEY}:{signature}"}  # type: ignore[attr-defined]


async def test_another_chats_channel_is_403(bot: Bot) -> None:
    mine = await start_session(bot.web_key)
    theirs = await start_session(bot.web_key)
    assert_error(await post_auth(mine["token"], theirs["channel"]), 403)
    assert_error(await post_auth(mine["token"], "private-other"), 403)


async def test_a_bad_form_is_400(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    answer = await call("POST", AUTH, b"socket_id=x&channel_name=y",
                        token=session["token"],
                        content_type="application/x-www-form-urlencoded")
    assert_error(answer, 400)


async def test_a_missing_token_is_401(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    assert_error(await post_auth(None, session["channel"]), 401)


async def test_an_unusable_token_is_401_everywhere(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    conversation = await Conversation.objects.aget()
    other_bot = await Bot.objects.acreate(slug="other", name="Other")
    token = session["token"]
    expired, _ = issue_chat_token(
        conversation.pk, bot.pk, datetime.now(UTC) - timedelta(days=2)
    )
    other_bots = seal_chat_token(ChatToken(
        conversation.pk, other_bot.pk, datetime.now(UTC) + timedelta(hours=1)
    ))
    gone = seal_chat_token(ChatToken(
        uuid.uuid4(), bot.pk, datetime.now(UTC) + timedelta(hours=1)
    ))
    tampered = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    for bad in [tampered, token[:-2], expired, other_bots, gone, "nonsense"]:
        assert_error(await post_auth(bad, "private-chat-" + bad), 401)
        assert_error(await call("POST", MESSAGES, {"type": "greeting"}, token=bad), 401)
        assert_error(await call("GET", MESSAGES, token=bad), 401)
    assert await Message.objects.acount() == 0


async def test_a_401_is_readable_by_an_allowed_page(bot: Bot) -> None:
    answer = await call("GET", MESSAGES, token="nonsense")
    assert answer.headers["access-control-allow-origin"] == PAGE


# Messages.

async def test_a_message_is_accepted_once_per_client_id(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    body = {"type": "text", "text": "when are you open", "client_id": "c-1"}
    first = await call("POST", MESSAGES, body, token=token)
    again = await call("POST", MESSAGES, body, token=token)
    assert first.status == again.status == 202
    assert first.json() == again.json()
    message = await Message.objects.aget()
    assert message.pk == first.json()["id"]
    assert message.content["kind"] == "text" and message.state == "pending"


async def test_greetings_and_taps_become_inbound_kinds(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    await call("POST", MESSAGES, {"type": "greeting"}, token=token)
    await call("POST", MESSAGES, {"type": "button", "payload": "hours"}, token=token)
    kinds = [m.content async for m in Message.objects.order_by("id")]
    assert [(k["kind"], k["payload"]) for k in kinds] == [
        ("greeting", None), ("postback", "hours"),
    ]


@pytest.mark.parametrize("body", [
    {"type": "shout"}, {"type": "text"}, {"type": "text", "text": "  "},
    {"type": "text", "text": 5}, {"type": "button"},
    {"type": "text", "text": "hi", "extra": 1},
    {"type": "text", "text": "hi", "client_id": "no spaces"},
])
async def test_a_malformed_message_is_400(bot: Bot, body: dict[str, object]) -> None:
    token = (await start_session(bot.web_key))["token"]
    assert_error(await call("POST", MESSAGES, body, token=token), 400)


async def test_a_too_long_text_is_413(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    body = {"type": "text", "text": "x" * 2001}
    assert_error(await call("POST", MESSAGES, body, token=token), 413)


async def test_the_history_shows_both_sides_in_order(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    conversation = await Conversation.objects.aget()
    await call("POST", MESSAGES, {"type": "greeting"}, token=token)
    await Message.objects.acreate(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="sent", content={"text": "Hi!", "buttons": [], "image": None,
                               "quick_replies": [{"title": "Hours", "payload": "h"}]},
    )
    await call("POST", MESSAGES, {"type": "button", "payload": "h"}, token=token)
    await call("POST", MESSAGES, {"type": "text", "text": "thanks"}, token=token)
    answer = await call("GET", MESSAGES, token=token)
    shown = answer.json()["messages"]
    assert [(m["sender"], m["text"]) for m in shown] == [
        ("bot", "Hi!"), ("user", "Hours"), ("user", "thanks"),
    ]
    assert set(shown[0]) == {"id", "sender", "text", "buttons", "quick_replies",
                             "image", "created_at"}
    assert shown[0]["quick_replies"] == [{"title": "Hours", "payload": "h"}]


# Rate limits and privacy.

async def test_too_many_messages_are_429_with_retry_after(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    with override_settings(WEB_RATE_LIMITS={"message.chat": (2, 60)}):
        for _ in range(2):
            answer = await call("POST", MESSAGES, {"type": "greeting"}, token=token)
            assert answer.status == 202
        answer = await call("POST", MESSAGES, {"type": "greeting"}, token=token)
    assert_error(answer, 429)
    assert 1 <= int(answer.headers["retry-after"]) <= 61


async def test_sessions_are_limited_per_client_address(bot: Bot) -> None:
    with override_settings(WEB_RATE_LIMITS={"session.address": (1, 60)}):
        await start_session(bot.web_key)
        answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    assert_error(answer, 429)
    assert "retry-after" in answer.headers


async def test_the_client_address_is_never_a_cache_key_or_log_line(
    bot: Bot, caplog: pytest.LogCaptureFixture, client_address: str
) -> None:
    caplog.set_level(logging.DEBUG)
    session = await start_session(bot.web_key)
    await call("POST", MESSAGES, {"type": "text", "text": "secret words"},
               token=session["token"])
    await call("GET", MESSAGES, token="nonsense")
    keys = await sync_to_async(cache_keys)()
    assert keys and not [key for key in keys if client_address in key]
    for text in [client_address, session["token"], "secret words", "nonsense"]:
        assert text not in caplog.text


def cache_keys() -> list[str]:
    backend = cache._cache  # type: ignore[attr-defined]
    if isinstance(backend, dict):
        return [str(key) for key in backend]
    client = backend.get_client()
    return [key.decode() for key in client.scan_iter("*web.rl.*")]
