"""The embedded default runs the worker inside the one web process."""

from __future__ import annotations

from typing import Any

from botcore.messages import Inbound
from gateway.pipeline.inbound import accept_inbound
from storage.bots import import_bot
from storage.models import Conversation
from tests.conftest import wait_until
from tests.support.pipeline import LOOPBACK_SETTINGS, SHOP
from tests.support.recorder import running_recorder


def test_embedded_web_process_answers_without_a_worker(start_web: Any) -> None:
    bot, _ = import_bot(SHOP)
    conversation = Conversation.objects.create(bot=bot, channel="loopback")
    with running_recorder() as recorder:
        web, _ = start_web(
            {
                "DJANGO_SETTINGS_MODULE": LOOPBACK_SETTINGS,
                "LOOPBACK_URL": recorder.url,
                "REDIS_URL": "",
                "WORKER_SWEEP_SECONDS": "0.5",
            }
        )
        accept_inbound(conversation, Inbound(kind="text", text="opening hours"))
        wait_until(lambda: recorder.deliveries, timeout=30)
    assert recorder.deliveries[0]["content"]["text"] == "9 to 17."
    assert "worker" in web.output()
