"""Store what a person sent, durably, before anyone acknowledges it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from botcore.messages import Inbound
from gateway.pipeline.updates import insert_params, insert_sql, mark_saved
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


# What a message shares with its stored duplicate: its platform's id or
# its client's idempotency id, each unique where it applies.
DuplicateKey = tuple[str, Any, Any]


@dataclass(frozen=True)
class Received:
    """An inbound message to store, and the ids that make it a redelivery."""

    conversation: Conversation
    inbound: Inbound
    platform_message_id: str | None = None
    client_id: str | None = None

    def keys(self) -> list[DuplicateKey]:
        """What a stored duplicate of this message would share with it."""
        keys: list[DuplicateKey] = []
        if self.platform_message_id is not None:
            keys.append(
                ("platform", self.conversation.channel, self.platform_message_id)
            )
        if self.client_id is not None:
            keys.append(("client", self.conversation.pk, self.client_id))
        return keys


def accept_many(received: Sequence[Received]) -> list[Accepted]:
    """Store several inbound messages in one transaction, in their order.

    Like `accept_inbound`, a message already stored (or earlier in the same
    batch) is not stored again. When another process stores a duplicate at
    the same moment, the insert fails with IntegrityError and nothing of
    the batch is kept: store the messages one by one then.
    """
    if len(received) <= 1 or not connection.features.can_return_rows_from_bulk_insert:
        return [
            accept_inbound(
                item.conversation,
                item.inbound,
                platform_message_id=item.platform_message_id,
                client_id=item.client_id,
            )
            for item in received
        ]
    outcomes = _new_or_stored(received, _stored_duplicates(received))
    fresh = [each.message for each in outcomes if each.created]
    if connection.vendor == "postgresql":
        # One statement, atomic by itself.
        _insert_touching_conversations(fresh)
        return outcomes
    with transaction.atomic():
        Message.objects.bulk_create(fresh)
        Conversation.objects.filter(
            pk__in={message.conversation_id for message in fresh}
        ).update(last_inbound_at=timezone.now())
    return outcomes


def _insert_touching_conversations(messages: list[Message]) -> None:
    """Insert the messages and stamp their conversations in one statement.

    PostgreSQL runs an UPDATE in a WITH clause along with the INSERT: one
    round trip instead of two for the batch.
    """
    if not messages:
        return
    key = Conversation._meta.pk
    assert key is not None and Message._meta.pk is not None
    conversations = [
        key.get_db_prep_value(conversation_id, connection)
        for conversation_id in {message.conversation_id for message in messages}
    ]
    returning = connection.ops.quote_name(Message._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"{_touch_sql(len(conversations))}"
            f" {insert_sql(Message, len(messages), with_pk=False)}"
            f" RETURNING {returning}",
            [
                timezone.now(),
                *conversations,
                *insert_params(messages, with_pk=False),
            ],
        )
        ids = [row[0] for row in cursor.fetchall()]
    for message, pk in zip(messages, ids, strict=True):
        message.pk = pk
    mark_saved(messages)


@lru_cache(maxsize=128)
def _touch_sql(conversations: int) -> str:
    """A WITH clause stamping `last_inbound_at` on that many conversations."""
    quote = connection.ops.quote_name
    key = Conversation._meta.pk
    assert key is not None
    stamp = Conversation._meta.get_field("last_inbound_at").column
    touched = ", ".join(["%s"] * conversations)
    return (
        f"WITH touched AS (UPDATE {quote(Conversation._meta.db_table)}"  # noqa: S608
        f" SET {quote(stamp)} = %s WHERE {quote(key.column)} IN ({touched}))"
    )


def _new_or_stored(
    received: Sequence[Received], seen: dict[DuplicateKey, Message]
) -> list[Accepted]:
    """Each message as a new row, or as the row it duplicates."""
    outcomes = []
    for item in received:
        keys = item.keys()
        found = next((seen[key] for key in keys if key in seen), None)
        if found is None:
            found = _inbound_row(item)
            seen.update(dict.fromkeys(keys, found))
            outcomes.append(Accepted(found, created=True))
        else:
            outcomes.append(Accepted(found, created=False))
    return outcomes


def _inbound_row(item: Received) -> Message:
    return Message(
        conversation=item.conversation,
        channel=item.conversation.channel,
        direction=Message.Direction.INBOUND,
        author="user",
        content=item.inbound.as_dict(),
        state=Message.State.PENDING,
        platform_message_id=item.platform_message_id,
        client_id=item.client_id,
    )


def _stored_duplicates(
    received: Sequence[Received],
) -> dict[DuplicateKey, Message]:
    """The stored messages these would duplicate, by their shared key."""
    platform_ids = {
        (item.conversation.channel, item.platform_message_id)
        for item in received
        if item.platform_message_id is not None
    }
    client_ids = {
        (item.conversation.pk, item.client_id)
        for item in received
        if item.client_id is not None
    }
    found: dict[DuplicateKey, Message] = {}
    if platform_ids:
        for message in Message.objects.filter(
            channel__in={channel for channel, _ in platform_ids},
            platform_message_id__in={mid for _, mid in platform_ids},
        ):
            found[("platform", message.channel, message.platform_message_id)] = message
    if client_ids:
        for message in Message.objects.filter(
            conversation_id__in={pk for pk, _ in client_ids},
            client_id__in={client_id for _, client_id in client_ids},
        ):
            found[("client", message.conversation_id, message.client_id)] = message
    return found


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
