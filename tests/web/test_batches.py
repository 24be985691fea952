"""Concurrent API requests share their database work, each answered alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.test import override_settings

from adapters.web import api, lookups
from storage.models import Bot, Conversation, Message
from tests.web.conftest import PAGE, Answer, call, start_session

pytestmark = pytest.mark.django_db(transaction=True)
SESSIONS = "/api/web/v1/sessions"
MESSAGES = "/api/web/v1/messages"


def record_batches(
    monkeypatch: pytest.MonkeyPatch, batches: Any
) -> list[int]:
    """Note the size of each batch a group commit runs, then run it."""
    sizes: list[int] = []
    run_batch: Callable[[Sequence[Any]], Any] = batches.run_batch

    def recorded(items: Sequence[Any]) -> Any:
        sizes.append(len(items))
        return run_batch(items)

    monkeypatch.setattr(batches, "run_batch", recorded)
    return sizes


async def post_texts(token: str, client_ids: list[str]) -> list[Answer]:
    return list(
        await asyncio.gather(
            *(
                call(
                    "POST",
                    MESSAGES,
                    {"type": "text", "text": f"question {client_id}",
                     "client_id": client_id},
                    token=token,
                )
                for client_id in client_ids
            )
        )
    )


async def test_concurrent_messages_are_stored_once_each_in_shared_batches(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = (await start_session(bot.web_key))["token"]
    sizes = record_batches(monkeypatch, api.message_batches)
    client_ids = [f"c-{number}" for number in range(30)] + ["c-3", "c-7"]
    with override_settings(WEB_RATE_LIMITS={"message.chat": (100, 60)}):
        answers = await post_texts(token, client_ids)
    assert {answer.status for answer in answers} == {202}
    ids = {
        cid: answer.json()["id"]
        for cid, answer in zip(client_ids, answers, strict=True)
    }
    assert answers[30].json()["id"] == ids["c-3"]
    assert answers[31].json()["id"] == ids["c-7"]
    stored = [m async for m in Message.objects.order_by("id")]
    assert len(stored) == 30
    assert {m.pk: m.client_id for m in stored} == {v: k for k, v in ids.items()}
    assert all(m.content["text"] == f"question {m.client_id}" for m in stored)
    assert sum(sizes) == len(client_ids) and max(sizes) > 1
    conversation = await Conversation.objects.aget()
    assert conversation.last_inbound_at is not None


async def test_a_redelivered_client_id_is_not_stored_again_in_a_batch(
    bot: Bot,
) -> None:
    token = (await start_session(bot.web_key))["token"]
    first = (await post_texts(token, ["c-1"]))[0].json()["id"]
    again = await post_texts(token, ["c-1", "c-2", "c-1"])
    assert [answer.json()["id"] for answer in again][::2] == [first, first]
    assert await Message.objects.acount() == 2


async def test_a_refused_request_leaves_the_rest_of_its_batch_stored(
    bot: Bot,
) -> None:
    token = (await start_session(bot.web_key))["token"]
    with override_settings(WEB_RATE_LIMITS={"message.chat": (3, 60)}):
        answers = await post_texts(token, [f"c-{n}" for n in range(5)])
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [202, 202, 202, 429, 429]
    refused = [answer for answer in answers if answer.status == 429]
    assert all(answer.json()["error"]["code"] == "rate_limited" for answer in refused)
    assert all(answer.headers["access-control-allow-origin"] == PAGE
               for answer in refused)
    assert await Message.objects.acount() == 3


async def test_concurrent_sessions_each_get_their_own_conversation(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(monkeypatch, api.session_batches)
    keys = [bot.web_key] * 12 + ["no-such-key"]
    answers = await asyncio.gather(
        *(call("POST", SESSIONS, {"bot": key}) for key in keys)
    )
    assert [answer.status for answer in answers] == [201] * 12 + [404]
    tokens = {answer.json()["token"] for answer in answers[:12]}
    assert len(tokens) == 12
    assert await Conversation.objects.filter(bot=bot).acount() == 12
    assert max(sizes) > 1


async def test_a_bot_deleted_meanwhile_fails_only_its_own_sessions(
    bot: Bot,
) -> None:
    gone = await Bot.objects.acreate(slug="gone", name="Gone", allowed_origins=["*"])
    await start_session(gone.web_key)
    await gone.adelete()
    # Still cached: the batch's insert fails, and each request runs alone.
    assert lookups.bots_by_key.get(gone.web_key) is not None
    answers = await asyncio.gather(
        *(call("POST", SESSIONS, {"bot": key})
          for key in [bot.web_key, gone.web_key, bot.web_key])
    )
    assert [answer.status for answer in answers] == [201, 404, 201]
    assert answers[1].json()["error"]["code"] == "unknown_bot"
    assert await Conversation.objects.acount() == 2


async def test_a_conversation_erased_meanwhile_fails_only_its_own_message(
    bot: Bot,
) -> None:
    kept = (await start_session(bot.web_key))["token"]
    erased = (await start_session(bot.web_key))["token"]
    for token in (kept, erased):
        await post_texts(token, ["c-0"])
    # The later message is the erased chat's; its conversation is cached.
    last = await Message.objects.order_by("-id").afirst()
    assert last is not None
    await Conversation.objects.filter(pk=last.conversation_id).adelete()
    answers = await asyncio.gather(
        *(call("POST", MESSAGES, {"type": "text", "text": "hi"}, token=token)
          for token in [kept, erased, kept])
    )
    assert [answer.status for answer in answers] == [202, 401, 202]
    assert await Message.objects.acount() == 3
