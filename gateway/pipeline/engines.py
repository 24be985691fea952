"""Build each bot's engine once and keep it until the bot changes."""

from __future__ import annotations

import threading
from datetime import datetime

from botcore.botfile import parse_bot_file
from botcore.dialogue import DialogueEngine
from botcore.engine import Engine
from storage.models import Bot

_cache: dict[int, tuple[datetime, Engine]] = {}
_lock = threading.Lock()


def engine_for(bot: Bot) -> Engine:
    """Return the engine of this version of the bot (its `updated_at`).

    The worker reads bots without their definition, which is read here
    only when a version of the bot is seen for the first time.
    """
    cached = _cache.get(bot.pk)
    if cached is not None and cached[0] == bot.updated_at:
        return cached[1]
    if bot.get_deferred_fields():
        bot = Bot.objects.get(pk=bot.pk)
    engine = DialogueEngine(parse_bot_file(bot.bot_file()))
    with _lock:
        _cache[bot.pk] = (bot.updated_at, engine)
    return engine
