"""A channel for pipeline tests: it delivers replies to a local HTTP server.

It implements the adapter contract the way the real adapters do (HTTP, a
platform id back, temporary and permanent failures), so the pipeline can be
tested without either real channel.
"""

from __future__ import annotations

import os
import time

import requests

from gateway.pipeline.adapters import (
    ChannelAdapter,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from storage.models import Message


class LoopbackAdapter(ChannelAdapter):
    channel = "loopback"

    def __init__(self) -> None:
        self.session = requests.Session()

    def deliver(self, message: Message) -> str | None:
        # Lets a test kill a worker after the replies are stored and before
        # they reach the platform.
        if os.environ.get("LOOPBACK_STALL_BEFORE_SEND"):
            time.sleep(3600)
        body = {
            "message": message.pk,
            "conversation": str(message.conversation_id),
            "reply_to": message.reply_to_id,
            "content": message.content,
        }
        try:
            answer = self.session.post(
                os.environ["LOOPBACK_URL"], json=body, timeout=5
            )
        except requests.RequestException as error:
            raise TemporaryDeliveryError(type(error).__name__) from error
        if answer.status_code >= 500:
            raise TemporaryDeliveryError(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            raise PermanentDeliveryError(f"HTTP {answer.status_code}")
        return str(answer.json()["id"])
