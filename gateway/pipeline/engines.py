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
    cached = _cache.get(bot.pk)
    if cached is not None and cached[0] == bot.updated_at:
        return cached[1]
    engine = DialogueEngine(parse_bot_file(bot.bot_file()))
    with _lock:
        _cache[bot.pk] = (bot.updated_at, engine)
    return engine
