"""Store what a person sent, durably, before anyone acknowledges it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from botcore.messages import Inbound
from storage.models import Conversation, Message


@dataclass(frozen=True)
class Accepted:
    message: Message
    created: bool


def accept_inbound(
    conversation: Conversation,
    inbound: Inbound,
    *,
    platform_message_id: str | None = None,
    client_id: str | None = None,
) -> Accepted:
    """Store an inbound message as awaiting the bot; a redelivery is a no-op.

    The caller acknowledges the platform only after this returns, and rings
    the doorbell (see `doorbell.ring`) when `created` is true.
    """
    return store_message(
        conversation,
        direction=Message.Direction.INBOUND,
        author="user",
        content=inbound.as_dict(),
        state=Message.State.PENDING,
        platform_message_id=platform_message_id,
        client_id=client_id,
    )


def store_message(
    conversation: Conversation,
    *,
    direction: str,
    author: str,
    content: dict[str, Any],
    state: str,
    platform_message_id: str | None = None,
    client_id: str | None = None,
) -> Accepted:
    """Insert a message unless its platform or client id is already stored."""
    message = Message(
        conversation=conversation,
        channel=conversation.channel,
        direction=direction,
        author=author,
        content=content,
        state=state,
        platform_message_id=platform_message_id,
        client_id=client_id,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
            if direction == Message.Direction.INBOUND:
                Conversation.objects.filter(pk=conversation.pk).update(
                    last_inbound_at=timezone.now()
                )
    except IntegrityError:
        existing = _find_duplicate(conversation, platform_message_id, client_id)
        if existing is None:
            raise
        return Accepted(existing, created=False)
    return Accepted(message, created=True)


def _find_duplicate(
    conversation: Conversation,
    platform_message_id: str | None,
    client_id: str | None,
) -> Message | None:
    if platform_message_id is not None:
        found = Message.objects.filter(
            channel=conversation.channel, platform_message_id=platform_message_id
        ).first()
        if found is not None:
            return found
    if client_id is not None:
        return Message.objects.filter(
            conversation=conversation, client_id=client_id
        ).first()
    return None
