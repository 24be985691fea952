"""Replies a person of the bot's team writes in the admin.

A reply is queued as an outbound message whose author is `human`, and the
workers deliver it like any other reply, on the conversation's channel
(on Messenger, outside the 24-hour window, with the HUMAN_AGENT tag when
the bot's owners enabled it). Like a reply written in a page's inbox, it
starts the bot's hold-back in the conversation.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from botcore.messages import Reply
from gateway.pipeline.doorbell import ring_sync
from storage.models import Conversation, Message

logger = logging.getLogger("gateway.admin")
# Messenger's limit for the text of one message.
MAX_HUMAN_REPLY_LENGTH = 2000


class HumanReplyError(ValueError):
    """A reply that cannot be sent as written; the message says why."""


def queue_human_reply(conversation_id: uuid.UUID, text: str) -> Message:
    """Queue a person's reply for delivery and hold the bot back."""
    text = text.strip()
    if not text:
        raise HumanReplyError("The reply is empty: write something to send.")
    if len(text) > MAX_HUMAN_REPLY_LENGTH:
        raise HumanReplyError(
            f"The reply is {len(text)} characters long; one reply holds "
            f"at most {MAX_HUMAN_REPLY_LENGTH}."
        )
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.select_related("bot").get(
            pk=conversation_id
        )
        message = Message.objects.create(
            conversation=conversation,
            channel=conversation.channel,
            direction=Message.Direction.OUTBOUND,
            author="human",
            content=Reply(text=text).as_dict(),
            state=Message.State.QUEUED,
            next_attempt_at=now,
        )
        hold_bot_back(conversation.pk, conversation.bot.human_hold_seconds, now)
    logger.info("conversation %s: human reply %s queued", conversation.pk, message.pk)
    ring_sync()
    return message


def hold_bot_back(
    conversation_id: uuid.UUID, hold_seconds: int, answered_at: datetime
) -> None:
    """Keep the bot quiet for its hold-back time from a person's answer on."""
    until = answered_at + timedelta(seconds=hold_seconds)
    Conversation.objects.filter(pk=conversation_id).filter(
        Q(bot_paused_until__isnull=True) | Q(bot_paused_until__lt=until)
    ).update(bot_paused_until=until)
