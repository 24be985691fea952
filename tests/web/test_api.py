"""The bubble's HTTP API: sessions, channel auth, messages, and refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test import override_settings

from adapters.web.database import in_database_thread
from adapters.web.rate_limits import counter_cache
from adapters.web.tokens import ChatToken, issue_chat_token, seal_chat_token
from storage.models import Bot, Conversation, Message
from tests.web.conftest import PAGE, Answer, cache_entries, call, start_session

pytestmark = pytest.mark.django_db(transaction=True)
SESSIONS = "/api/web/v1/sessions"
AUTH = "/api/web/v1/pusher/auth"
MESSAGES = "/api/web/v1/messages"
SOCKET_ID = "1234.5678"
OLD_KEY = base64.urlsafe_b64encode(b"o" * 32).decode().rstrip("=")
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")


def auth_form(channel: str, socket_id: str = SOCKET_ID) -> bytes:
    return f"socket_id={socket_id}&channel_name={channel}".encode()


async def post_auth(
    token: str | None, channel: str, origin: str | None = PAGE
) -> Answer:
    form = "application/x-www-form-urlencoded"
    return await call(
        "POST", AUTH, auth_form(channel), token=token, content_type=form,
        origin=origin,
    )


def assert_error(answer: Answer, status: int) -> None:
    assert answer.status == status, answer.body
    error = answer.json()["error"]
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
    assert_readable_by(answer, PAGE)


async def test_an_unknown_web_key_is_404(bot: Bot) -> None:
    assert_error(await call("POST", SESSIONS, {"bot": "no-such-key"}), 404)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"bot": 3}', b"{}"])
async def test_a_malformed_session_request_is_400(bot: Bot, body: bytes) -> None:
    assert_error(await call("POST", SESSIONS, body), 400)


def assert_readable_by(answer: Answer, origin: str) -> None:
    assert answer.headers["access-control-allow-origin"] == origin
    assert answer.headers["access-control-expose-headers"] == "Retry-After"


def assert_no_cors(answer: Answer) -> None:
    assert not [name for name in answer.headers if name.startswith("access-control")]


async def test_an_oversized_body_is_413(bot: Bot) -> None:
    body = b'{"bot": "' + b"x" * 20_000 + b'"}'
    assert_error(await call("POST", SESSIONS, body), 413)
    assert_error(await call("POST", MESSAGES, body), 413)


@pytest.mark.parametrize("path", [SESSIONS, AUTH, MESSAGES])
async def test_a_413_is_readable_by_an_allowed_page(bot: Bot, path: str) -> None:
    body = b"x" * 20_000
    declared = [(b"content-length", str(len(body)).encode())]
    # Refused on the declared length, before the body is read.
    by_length = await call("POST", path, b"x", headers=declared)
    # Refused once the streamed chunks add up to too much.
    by_total = await call("POST", path, body, chunk_size=512)
    for answer in [by_length, by_total]:
        assert_error(answer, 413)
        assert_readable_by(answer, PAGE)
    elsewhere = await call("POST", path, body, chunk_size=512,
                           origin="https://evil.example")
    assert_error(elsewhere, 413)
    assert_no_cors(elsewhere)


async def test_a_disallowed_origin_is_403_without_cors_headers(bot: Bot) -> None:
    answer = await call("POST", SESSIONS, {"bot": bot.web_key},
                        origin="https://evil.example")
    assert_error(answer, 403)
    assert_no_cors(answer)
    assert await Conversation.objects.acount() == 0


async def test_a_disallowed_origin_may_not_chat_either(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    evil = "https://evil.example"
    answers = [
        await call("POST", MESSAGES, {"type": "greeting"}, origin=evil,
                   token=session["token"]),
        await post_auth(session["token"], session["channel"], origin=evil),
    ]
    for answer in answers:
        assert_error(answer, 403)
        assert not [h for h in answer.headers if h.startswith("access-control")]
    assert await Message.objects.acount() == 0


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


@pytest.mark.parametrize(("allowed", "page"), [
    ("HTTPS://Shop.Example:443", "https://shop.example"),
    ("https://shop.example", "HTTPS://SHOP.example:443"),
    ("http://shop.example:80", "http://Shop.Example"),
    ("http://shop.example:8080", "http://SHOP.EXAMPLE:8080/"),
])
async def test_origins_match_whatever_their_case_and_default_port(
    bot: Bot, allowed: str, page: str
) -> None:
    bot.allowed_origins = [allowed]
    await bot.asave()
    preflight = await call("OPTIONS", SESSIONS, origin=page, headers=PREFLIGHT)
    session = await call("POST", SESSIONS, {"bot": bot.web_key}, origin=page)
    assert session.status == 201, session.body
    # Echoed as a browser writes it: that is how it sent it.
    canonical = allowed.lower().removesuffix(":443").removesuffix(":80")
    assert_readable_by(session, canonical)
    assert preflight.headers["access-control-allow-origin"] == canonical


@pytest.mark.parametrize(("allowed", "page"), [
    ("https://shop.example", "http://shop.example"),
    ("https://shop.example", "https://shop.example:80"),
    ("http://shop.example", "http://shop.example:443"),
    ("https://shop.example", "https://shop.example.evil"),
])
async def test_another_scheme_or_port_is_another_origin(
    bot: Bot, allowed: str, page: str
) -> None:
    bot.allowed_origins = [allowed]
    await bot.asave()
    answer = await call("POST", SESSIONS, {"bot": bot.web_key}, origin=page)
    assert_error(answer, 403)
    assert_no_cors(answer)


async def test_the_gateways_own_page_matches_with_its_default_port(bot: Bot) -> None:
    bot.allowed_origins = []
    await bot.asave()
    with override_settings(ALLOWED_HOSTS=["gateway.test"]):
        answer = await call("POST", SESSIONS, {"bot": bot.web_key},
                            origin="http://Gateway.Test:80",
                            headers=[(b"host", b"GATEWAY.test:80")])
    assert answer.status == 201, answer.body


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
    assert answer.status == 200
    assert answer.json() == {"auth": expected_auth(session["channel"])}


def expected_auth(channel: str) -> str:
    signature = hmac.new(
        settings.PUSHER_SECRET.encode(),
        f"{SOCKET_ID}:{channel}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return f"{settings.PUSHER_KEY}:{signature}"


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
    expired = issue_chat_token(
        conversation.pk, bot.pk, datetime.now(UTC) - timedelta(seconds=1)
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
    # The page's script may read how long to wait.
    assert_readable_by(answer, PAGE)


async def test_sessions_are_limited_per_client_address(bot: Bot) -> None:
    with override_settings(WEB_RATE_LIMITS={"session.address": (1, 60)}):
        await start_session(bot.web_key)
        answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    assert_error(answer, 429)
    assert "retry-after" in answer.headers


async def test_pusher_auth_is_limited_per_chat(bot: Bot) -> None:
    session = await start_session(bot.web_key)
    with override_settings(WEB_RATE_LIMITS={"auth.chat": (2, 60)}):
        for _ in range(2):
            answer = await post_auth(session["token"], session["channel"])
            assert answer.status == 200
        answer = await post_auth(session["token"], session["channel"])
        other = await start_session(bot.web_key)
        assert (await post_auth(other["token"], other["channel"])).status == 200
    assert_error(answer, 429)
    assert 1 <= int(answer.headers["retry-after"]) <= 61


async def test_the_history_is_limited_per_chat(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    with override_settings(WEB_RATE_LIMITS={"history.chat": (2, 60)}):
        for _ in range(2):
            assert (await call("GET", MESSAGES, token=token)).status == 200
        answer = await call("GET", MESSAGES, token=token)
    assert_error(answer, 429)
    assert "retry-after" in answer.headers


async def test_messages_are_limited_per_client_address(bot: Bot) -> None:
    tokens = [(await start_session(bot.web_key))["token"] for _ in range(3)]
    greeting = {"type": "greeting"}
    with override_settings(WEB_RATE_LIMITS={"message.address": (2, 60)}):
        answers = [await call("POST", MESSAGES, greeting, token=t) for t in tokens]
    assert [answer.status for answer in answers[:2]] == [202, 202]
    assert_error(answers[2], 429)
    assert await Message.objects.acount() == 2


async def test_the_address_behind_trusted_proxies_is_limited(
    bot: Bot, client_address: str
) -> None:
    def forwarded(chain: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-forwarded-for", chain.encode())]

    other = client_address.rsplit(".", 1)[0] + ".0"
    limits = {"session.address": (1, 60)}
    body = {"bot": bot.web_key}
    with override_settings(PROXY_HOPS=1, WEB_RATE_LIMITS=limits):
        first = await call("POST", SESSIONS, body, headers=forwarded(client_address))
        # What the client wrote itself, left of the router's entry, is ignored.
        spoofed = f"192.0.2.1, {client_address}"
        again = await call("POST", SESSIONS, body, headers=forwarded(spoofed))
        elsewhere = await call("POST", SESSIONS, body, headers=forwarded(other))
    with override_settings(PROXY_HOPS=0, WEB_RATE_LIMITS=limits):
        # Without trusted proxies the header is the client's own say-so.
        direct = await call("POST", SESSIONS, body, headers=forwarded(other))
    assert (first.status, elsewhere.status) == (201, 201)
    assert_error(again, 429)
    assert_error(direct, 429)


async def test_the_client_address_is_never_a_cache_key_or_log_line(
    bot: Bot, caplog: pytest.LogCaptureFixture, client_address: str
) -> None:
    caplog.set_level(logging.DEBUG)
    session = await start_session(bot.web_key)
    await call("POST", MESSAGES, {"type": "text", "text": "secret words"},
               token=session["token"])
    await call("GET", MESSAGES, token="nonsense")
    entries = await sync_to_async(cache_entries)()
    assert entries
    # Neither the address nor a hash that outlives the window.
    lasting = [
        hashlib.sha256(client_address.encode()).hexdigest()[:32],
        hmac.new(settings.SECRET_KEY.encode(), client_address.encode(),
                 hashlib.sha256).hexdigest()[:32],
    ]
    for key, value in entries.items():
        for needle in [client_address, *lasting]:
            assert needle not in key and needle.encode() not in value
    for text in [client_address, session["token"], "secret words", "nonsense"]:
        assert text not in caplog.text


# Keys rotate.

async def test_a_token_sealed_by_an_older_key_keeps_its_chat(bot: Bot) -> None:
    with override_settings(CHAT_TOKEN_KEYS=[OLD_KEY]):
        session = await start_session(bot.web_key)
    token, channel = session["token"], session["channel"]
    with override_settings(CHAT_TOKEN_KEYS=[NEW_KEY, OLD_KEY]):
        auth = await post_auth(token, channel)
        sent = await call("POST", MESSAGES, {"type": "greeting"}, token=token)
        history = await call("GET", MESSAGES, token=token)
        newer = await start_session(bot.web_key)
        refused = await post_auth(token, newer["channel"])
    assert auth.status == 200 and auth.json() == {"auth": expected_auth(channel)}
    assert sent.status == 202 and history.status == 200
    assert newer["token"] != token
    assert_error(refused, 403)


# Failures.

async def test_an_unknown_api_path_is_a_json_404(bot: Bot) -> None:
    for method, path in [("GET", "/api/web/v1/nothing"),
                         ("POST", "/api/web/v1/sessions/extra"),
                         ("DELETE", "/api/web/v1/")]:
        answer = await call(method, path, {"bot": bot.web_key})
        assert_error(answer, 404)
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["access-control-allow-origin"] == PAGE


async def test_a_dead_cache_is_a_500_in_the_api_shape(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    token = (await start_session(bot.web_key))["token"]
    # The browser's preflight comes first, while all is well.
    await call("OPTIONS", MESSAGES, headers=PREFLIGHT)
    dead_redis = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
    }}
    try:
        with override_settings(CACHES=dead_redis):
            counter_cache.cache_clear()
            answer = await call("POST", MESSAGES, {"type": "text", "text": "hi there"},
                                token=token)
    finally:
        counter_cache.cache_clear()
    assert_error(answer, 500)
    assert answer.json()["error"]["code"] == "internal_error"
    assert answer.headers["access-control-allow-origin"] == PAGE
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "gateway.web"
    assert record.getMessage().startswith("POST messages failed: ConnectionError")
    for text in [token, "hi there", "127.0.0.1"]:
        assert text not in caplog.text
    assert await Message.objects.acount() == 0


async def test_a_database_that_went_away_is_a_500_in_the_api_shape(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    await start_session(bot.web_key)
    await call("OPTIONS", SESSIONS, headers=PREFLIGHT)
    saved = await in_database_thread(point_the_database_at_nothing)()
    try:
        answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    finally:
        await in_database_thread(restore_the_database)(saved)
    assert_error(answer, 500)
    assert answer.headers["access-control-allow-origin"] == PAGE
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "gateway.web"
    assert record.getMessage().startswith("POST sessions failed: OperationalError")
    # Once it is back, so is the API.
    await start_session(bot.web_key)


PREFLIGHT = [(b"access-control-request-method", b"POST")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def point_the_database_at_nothing() -> dict[str, object]:
    """Make the API thread's next connection fail, as a lost server does."""
    saved = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent/gateway.sqlite3"
    else:
        connection.settings_dict["HOST"] = "127.0.0.1"
        connection.settings_dict["PORT"] = closed_port()
    connection.close()
    return saved


def restore_the_database(saved: dict[str, object]) -> None:
    connection.close()
    connection.settings_dict.update(saved)
