"""The few rows the bubble's API reads on every request, read cheaply.

Every request needs its bot's allowed origins, and each request with a
token needs to know that its conversation still exists and belongs to the
token's bot. Building those queries with the ORM costs more CPU than the
rest of the request (see bench/web_api.py), so they are plain SQL over the
models' own table and column names, and their answers are kept in the
process for a short while:

- a bot's id and allowed origins, by web key and by id, for BOT_SECONDS:
  a change of a bot's origins takes effect within that time, as does a
  new web key;
- which bot a conversation belongs to, for CONVERSATION_SECONDS: that never
  changes, but an erased conversation is noticed only after that time (its
  messages are refused at once: they can no longer be stored). The bot's
  origins are not part of it: they come from the bots' own entries.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from django.db import connection

from adapters.web.cors import canonical_origin
from gateway.pipeline.updates import insert_params, insert_sql, mark_saved
from storage.models import Bot, Conversation

BOT_SECONDS = 10.0
CONVERSATION_SECONDS = 60.0
MAX_ENTRIES = 50_000

Key = TypeVar("Key")
Value = TypeVar("Value")


class ExpiringCache(Generic[Key, Value]):
    """A small thread-safe map whose entries expire; cleared when full."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: dict[Key, tuple[float, Value]] = {}
        self.lock = threading.Lock()

    def get(self, key: Key) -> Value | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: Key, value: Value) -> None:
        with self.lock:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.clear()
            self.entries[key] = (time.monotonic() + self.seconds, value)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


@dataclass(frozen=True)
class BotEntry:
    id: int
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class ConversationEntry:
    id: uuid.UUID
    bot: BotEntry


bots_by_key: ExpiringCache[str, BotEntry] = ExpiringCache(BOT_SECONDS)
bots_by_id: ExpiringCache[int, BotEntry] = ExpiringCache(BOT_SECONDS)
# A conversation's bot id, by the conversation's id.
conversations: ExpiringCache[uuid.UUID, int] = ExpiringCache(CONVERSATION_SECONDS)


def forget_all() -> None:
    """Drop every cached row, as after a deletion noticed the hard way."""
    for cache in (bots_by_key, bots_by_id, conversations):
        cache.clear()


def _origins(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(
        canonical_origin(item) for item in value or () if isinstance(item, str)
    )


def _table(model: Any) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _column(model: Any, field: str) -> str:
    return str(connection.ops.quote_name(model._meta.get_field(field).column))


# The statements interpolate only the models' own quoted table and column
# names; every value is a query parameter.


@lru_cache(maxsize=2)
def _bot_sql(by: str) -> str:
    return (
        f"SELECT {_column(Bot, 'id')}, {_column(Bot, 'allowed_origins')} "  # noqa: S608
        f"FROM {_table(Bot)} WHERE {_column(Bot, by)} = %s"
    )


@lru_cache(maxsize=1)
def _conversation_sql() -> str:
    bot_id, origins = _column(Conversation, "bot"), _column(Bot, "allowed_origins")
    return (
        f"SELECT c.{bot_id}, b.{origins}"  # noqa: S608
        f" FROM {_table(Conversation)} c JOIN {_table(Bot)} b"
        f" ON b.{_column(Bot, 'id')} = c.{bot_id}"
        f" WHERE c.{_column(Conversation, 'id')} = %s"
        f" AND c.{_column(Conversation, 'channel')} = %s"
    )


def _fetch_one(sql: str, parameters: list[Any]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchone()


def bot_with_key(web_key: str) -> BotEntry | None:
    """Return the bot that has this web key, if any."""
    cached = bots_by_key.get(web_key)
    if cached is not None:
        return cached
    row = _fetch_one(_bot_sql("web_key"), [web_key])
    if row is None:
        return None
    entry = BotEntry(int(row[0]), _origins(row[1]))
    bots_by_key.put(web_key, entry)
    bots_by_id.put(entry.id, entry)
    return entry


def bot_with_id(bot_id: int) -> BotEntry | None:
    """Return the bot that has this id, if it still exists."""
    cached = bots_by_id.get(bot_id)
    if cached is not None:
        return cached
    row = _fetch_one(_bot_sql("id"), [bot_id])
    if row is None:
        return None
    entry = BotEntry(int(row[0]), _origins(row[1]))
    bots_by_id.put(bot_id, entry)
    return entry


def web_conversation(conversation_id: uuid.UUID) -> ConversationEntry | None:
    """Return a web conversation and its bot, if the conversation exists."""
    bot_id = conversations.get(conversation_id)
    if bot_id is not None:
        bot = bot_with_id(bot_id)
        return None if bot is None else ConversationEntry(conversation_id, bot)
    primary_key = Conversation._meta.get_field("id")
    prepared_id = primary_key.get_db_prep_value(conversation_id, connection)
    row = _fetch_one(_conversation_sql(), [prepared_id, "web"])
    if row is None:
        return None
    bot = BotEntry(int(row[0]), _origins(row[1]))
    conversations.put(conversation_id, bot.id)
    bots_by_id.put(bot.id, bot)
    return ConversationEntry(conversation_id, bot)


def insert_conversations(
    bot_ids: Sequence[int], token_expires_at: datetime
) -> list[Conversation]:
    """Store new web conversations, one per bot id, with one plain INSERT."""
    conversations = [
        Conversation(
            bot_id=bot_id, channel="web", chat_token_expires_at=token_expires_at
        )
        for bot_id in bot_ids
    ]
    if not conversations:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            insert_sql(Conversation, len(conversations), with_pk=True),
            insert_params(conversations, with_pk=True),
        )
    mark_saved(conversations)
    return conversations
