"""The rows the API keeps in the process: how long, and what happens after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from adapters.web import lookups
from adapters.web.lookups import ExpiringCache
from storage.models import Bot, Conversation, Message
from tests.web.conftest import PAGE, call, start_session

pytestmark = pytest.mark.django_db(transaction=True)
SESSIONS = "/api/web/v1/sessions"
MESSAGES = "/api/web/v1/messages"
SHORT = 0.3


@pytest.fixture
def short_bot_entries() -> Iterator[None]:
    """Let the bots' entries expire within the test, as they do in 10 s."""
    saved = lookups.bots_by_key.seconds, lookups.bots_by_id.seconds
    lookups.bots_by_key.seconds = lookups.bots_by_id.seconds = SHORT
    yield
    lookups.bots_by_key.seconds, lookups.bots_by_id.seconds = saved


def test_an_entry_lasts_its_lifetime_and_no_longer() -> None:
    cache: ExpiringCache[str, int] = ExpiringCache(SHORT)
    cache.put("a", 1)
    assert cache.get("a") == 1 and cache.get("b") is None
    time.sleep(SHORT + 0.05)
    assert cache.get("a") is None


def test_a_full_cache_starts_over() -> None:
    cache: ExpiringCache[int, int] = ExpiringCache(60)
    for number in range(lookups.MAX_ENTRIES):
        cache.put(number, number)
    cache.put(-1, -1)
    assert cache.get(0) is None and cache.get(-1) == -1


async def disallow_the_page(bot: Bot) -> None:
    bot.allowed_origins = ["https://elsewhere.example"]
    await bot.asave()


async def test_a_bots_origins_are_kept_for_their_lifetime(
    bot: Bot, short_bot_entries: None
) -> None:
    await start_session(bot.web_key)
    await disallow_the_page(bot)
    # Still cached: the change is not seen yet.
    await start_session(bot.web_key)
    await asyncio.sleep(SHORT + 0.05)
    answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    assert answer.status == 403


async def test_a_chat_sees_its_bots_origins_change_as_soon_as_a_session_does(
    bot: Bot, short_bot_entries: None
) -> None:
    token = (await start_session(bot.web_key))["token"]
    greeting = {"type": "greeting", "client_id": "g"}
    assert (await call("POST", MESSAGES, greeting, token=token)).status == 202
    await disallow_the_page(bot)
    await asyncio.sleep(SHORT + 0.05)
    # The conversation is still cached; its bot's origins are not.
    assert lookups.conversations.get((await Conversation.objects.aget()).pk)
    answer = await call("GET", MESSAGES, token=token)
    assert answer.status == 403
    assert "access-control-allow-origin" not in answer.headers


async def test_a_deleted_bot_gets_no_new_sessions(bot: Bot) -> None:
    await start_session(bot.web_key)
    assert lookups.bots_by_key.get(bot.web_key) is not None
    await bot.adelete()
    # Its row is still cached: the insert fails, and the caches are dropped.
    answer = await call("POST", SESSIONS, {"bot": bot.web_key})
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "unknown_bot"
    assert lookups.bots_by_key.get(bot.web_key) is None
    assert (await call("POST", SESSIONS, {"bot": bot.web_key})).status == 404
    assert await Conversation.objects.acount() == 0


async def test_an_erased_conversation_refuses_its_token(bot: Bot) -> None:
    token = (await start_session(bot.web_key))["token"]
    greeting = {"type": "greeting"}
    assert (await call("POST", MESSAGES, greeting, token=token)).status == 202
    conversation = await Conversation.objects.aget()
    assert lookups.conversations.get(conversation.pk) == bot.pk
    await conversation.adelete()
    # Cached, so the message is refused when it cannot be stored.
    answer = await call("POST", MESSAGES, {"type": "text", "text": "hi"},
                        token=token)
    assert answer.status == 401
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert lookups.conversations.get(conversation.pk) is None
    assert (await call("GET", MESSAGES, token=token)).status == 401
    assert await Message.objects.acount() == 0
