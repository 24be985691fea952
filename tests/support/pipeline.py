"""What the pipeline tests share: a small bot, messages, and a drain."""

from __future__ import annotations

from typing import Any

from botcore.messages import Inbound
from gateway.pipeline.worker import new_worker_id, process_one_conversation
from storage.models import Conversation, Message
from tests.support.recorder import Recorder

SHOP = {
    "slug": "shop",
    "name": "Shop",
    "language": "en",
    "greeting": [{"text": "Hello!"}],
    "fallback": [{"text": "Sorry?"}],
    "dialogues": [
        {"id": "hours", "samples": ["when are you open", "opening hours"],
         "replies": [{"text": "9 to 17."}]},
    ],
}
LOOPBACK_SETTINGS = "tests.support.settings_loopback"


def text(words: str) -> Inbound:
    return Inbound(kind="text", text=words)


def worker_env(recorder: Recorder, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": LOOPBACK_SETTINGS,
        "LOOPBACK_URL": recorder.url,
        "WORKER_SWEEP_SECONDS": "0.5",
        **extra,
    }


def drain() -> None:
    """Work as one worker would until nothing is due."""
    worker_id = new_worker_id()
    while process_one_conversation(worker_id):
        pass


def drained_then(condition: Any) -> Any:
    """A condition for wait_until that first lets a worker drain the queue."""

    def check() -> Any:
        drain()
        return condition()

    return check


def output_has(process: Any, text: str) -> bool:
    return text in process.output()


def outbound(conversation: Conversation) -> Any:
    return Message.objects.filter(
        conversation=conversation, direction=Message.Direction.OUTBOUND
    ).order_by("id")


def inbound(conversation: Conversation) -> Any:
    return Message.objects.filter(
        conversation=conversation, direction=Message.Direction.INBOUND
    ).order_by("id")
