"""Fixtures of the pipeline tests: a loopback conversation and its server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.bots import import_bot
from storage.models import Conversation
from tests.support.pipeline import SHOP
from tests.support.recorder import Recorder, running_recorder


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    with running_recorder() as recorder:
        monkeypatch.setenv("LOOPBACK_URL", recorder.url)
        yield recorder


@pytest.fixture
def conversation(transactional_db: None) -> Conversation:
    bot, _ = import_bot(SHOP)
    return Conversation.objects.create(bot=bot, channel="loopback")
