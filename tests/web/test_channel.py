"""Publishing replies: parts under Pusher's limit, the token's own channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from adapters.web.channel import (
    MAX_EVENT_BYTES,
    WebAdapter,
    encode_event,
    split_payload,
)
from adapters.web.chats import history_payload
from adapters.web.pusher.hub import stop_hub
from adapters.web.pusher.signing import channel_auth, sign
from adapters.web.routing import websocket_urlpatterns
from adapters.web.tokens import chat_channel, issue_chat_token, token_expiry
from gateway.pipeline.worker import new_worker_id, process_one_conversation
from storage.models import Bot, Conversation, Message
from tests.conftest import free_port
from tests.web.conftest import call, start_session


@pytest.fixture(autouse=True)
async def stop_pusher_hub() -> AsyncIterator[None]:
    """Stop the test loop's hub: a hub left on a closed loop holds the layer."""
    yield
    await stop_hub()


def bot_message(text: str, **extras: Any) -> dict[str, Any]:
    return {"id": 9, "sender": "bot", "text": text, "buttons": [],
            "quick_replies": [], "image": None,
            "created_at": "2026-01-01T00:00:00+00:00", **extras}


def test_a_small_message_is_one_event() -> None:
    payload = bot_message("Hello")
    assert split_payload(payload) == [payload]


@pytest.mark.parametrize("character", ["a", "é", "€", "🙂", '"'])
def test_a_large_message_is_split_not_dropped(character: str) -> None:
    buttons = [{"title": "Where?", "payload": "address"}]
    payload = bot_message(character * 12_000, buttons=buttons,
                          image="https://example.com/a.png")
    parts = split_payload(payload)
    assert len(parts) > 1
    assert all(len(encode_event(part)) <= MAX_EVENT_BYTES for part in parts)
    assert "".join(part["text"] for part in parts) == payload["text"]
    assert [(p["part"], p["parts"]) for p in parts] == [
        (n, len(parts)) for n in range(1, len(parts) + 1)
    ]
    assert parts[-1]["buttons"] == buttons and parts[-1]["image"]
    assert all(not part["buttons"] for part in parts[:-1])
    assert {part["id"] for part in parts} == {9}


def test_extras_that_do_not_fit_with_text_travel_alone() -> None:
    chips = [{"title": "t" * 80, "payload": "p" * 100} for _ in range(13)]
    payload = bot_message("x" * 20_000, quick_replies=chips)
    parts = split_payload(payload)
    assert all(len(encode_event(part)) <= MAX_EVENT_BYTES for part in parts)
    assert parts[-1]["quick_replies"] == chips
    assert "".join(part["text"] for part in parts) == payload["text"]


@pytest.fixture
def reply(transactional_db: None) -> Message:
    bot = Bot.objects.create(slug="b", name="B", allowed_origins=["*"])
    conversation = Conversation.objects.create(bot=bot, channel="web")
    return Message.objects.create(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="queued", next_attempt_at=timezone.now(),
        content={"text": "Hi", "buttons": [], "quick_replies": [], "image": None},
    )


def test_a_failed_publish_is_retried_by_the_pipeline(
    reply: Message, settings: Any
) -> None:
    # Pusher's HTTP API where nothing listens: the pusher library fails.
    settings.PUSHER_URL = f"http://key:secret@127.0.0.1:{free_port()}/apps/1"
    assert process_one_conversation(new_worker_id())
    reply.refresh_from_db()
    assert (reply.state, reply.attempts) == ("queued", 1)
    assert reply.next_attempt_at is not None
    assert reply.next_attempt_at > timezone.now()
    assert "publish" in reply.last_error


@pytest.mark.django_db(transaction=True)
async def test_a_reply_goes_to_the_chats_channel_as_listed() -> None:
    bot = await Bot.objects.acreate(slug="b", name="B", allowed_origins=["*"])
    # A conversation stored without its token's expiry: today's TTL counts.
    conversation = await Conversation.objects.acreate(bot=bot, channel="web")
    token = issue_chat_token(
        conversation.pk, conversation.bot_id, token_expiry(conversation.created_at)
    )
    channel = chat_channel(token)
    communicator, socket_id = await websocket()
    subscribed = await subscribe(
        communicator, channel, channel_auth(socket_id, channel)
    )
    assert subscribed["event"] == "pusher_internal:subscription_succeeded"
    reply = await Message.objects.acreate(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="queued", content={"text": "Hi", "buttons": [], "quick_replies": [],
                                 "image": None},
    )
    await sync_to_async(WebAdapter().deliver)(reply)
    event = await communicator.receive_json_from(5)
    assert (event["event"], event["channel"]) == ("message", channel)
    assert json.loads(event["data"]) == history_payload([reply])[0]
    await communicator.disconnect()


async def websocket() -> tuple[WebsocketCommunicator, str]:
    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/app/{settings.PUSHER_KEY}?protocol=7"
    )
    connected, _ = await communicator.connect()
    assert connected
    established = await communicator.receive_json_from(5)
    socket_id = json.loads(established["data"])["socket_id"]
    return communicator, socket_id


async def subscribe(
    communicator: WebsocketCommunicator, channel: str, auth: str
) -> dict[str, Any]:
    await communicator.send_json_to({
        "event": "pusher:subscribe", "data": {"channel": channel, "auth": auth},
    })
    return dict(await communicator.receive_json_from(5))


@pytest.mark.django_db(transaction=True)
async def test_a_forged_subscription_is_refused_and_a_real_one_gets_replies() -> None:
    bot = await Bot.objects.acreate(slug="ws", name="WS", allowed_origins=["*"])
    session = await start_session(bot.web_key)
    communicator, socket_id = await websocket()

    forged = f"{settings.PUSHER_KEY}:" + sign("not-the-secret",
                                              f"{socket_id}:{session['channel']}")
    refused = await subscribe(communicator, session["channel"], forged)
    assert refused["event"] == "pusher:subscription_error"

    answer = await call(
        "POST", "/api/web/v1/pusher/auth",
        f"socket_id={socket_id}&channel_name={session['channel']}".encode(),
        token=session["token"], content_type="application/x-www-form-urlencoded",
    )
    while (await communicator.receive_json_from(5))["event"] != "pusher:error":
        pass
    accepted = await subscribe(communicator, session["channel"],
                               answer.json()["auth"])
    assert accepted["event"] == "pusher_internal:subscription_succeeded"

    conversation = await Conversation.objects.aget()
    reply = await Message.objects.acreate(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="queued", content={"text": "Welcome", "buttons": [],
                                 "quick_replies": [], "image": None},
    )
    await sync_to_async(WebAdapter().deliver)(reply)
    event = await communicator.receive_json_from(5)
    assert event["event"] == "message" and event["channel"] == session["channel"]
    assert json.loads(event["data"])["text"] == "Welcome"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_replies_reach_chats_begun_under_another_token_lifetime() -> None:
    bot = await Bot.objects.acreate(slug="ttl", name="TTL", allowed_origins=["*"])
    with override_settings(CHAT_TOKEN_TTL=86_400):
        session = await start_session(bot.web_key)
    conversation = await Conversation.objects.aget()
    assert conversation.chat_token_expires_at == datetime.fromisoformat(
        session["expires_at"]
    )
    communicator, socket_id = await websocket()
    answer = await call(
        "POST", "/api/web/v1/pusher/auth",
        f"socket_id={socket_id}&channel_name={session['channel']}".encode(),
        token=session["token"], content_type="application/x-www-form-urlencoded",
    )
    subscribed = await subscribe(communicator, session["channel"],
                                 answer.json()["auth"])
    assert subscribed["event"] == "pusher_internal:subscription_succeeded"

    reply = await Message.objects.acreate(
        conversation=conversation, channel="web", direction="out", author="bot",
        state="queued", content={"text": "Still here", "buttons": [],
                                 "quick_replies": [], "image": None},
    )
    # The operator shortens the lifetime of new tokens; this chat's stays.
    with override_settings(CHAT_TOKEN_TTL=3_600):
        await sync_to_async(WebAdapter().deliver)(reply)
    event = await communicator.receive_json_from(5)
    assert event["event"] == "message" and event["channel"] == session["channel"]
    assert json.loads(event["data"])["text"] == "Still here"
    await communicator.disconnect()
