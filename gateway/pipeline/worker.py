"""The worker: answer pending messages and deliver the replies, in order.

A worker claims one conversation at a time (a short transaction that skips
rows other workers have locked, then a lease on the row), so that each
conversation is handled by one worker, in the order its messages came.
Within the claim it answers every pending inbound message, storing the
replies in the same transaction that marks the message handled, then
delivers the queued replies through the channel's adapter.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from botcore.messages import Inbound, Reply
from gateway.pipeline.adapters import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    adapter_for,
)
from gateway.pipeline.engines import engine_for
from storage.models import Conversation, Message

logger = logging.getLogger("gateway.pipeline")
CANDIDATES_PER_CLAIM = 20


def new_worker_id() -> str:
    return uuid.uuid4().hex[:16]


def due_work(now: datetime) -> Q:
    """Messages that need a worker now."""
    return Q(state=Message.State.PENDING) | Q(
        state__in=[Message.State.QUEUED, Message.State.SENDING],
        next_attempt_at__lte=now,
    )


def process_one_conversation(worker_id: str) -> bool:
    """Claim a conversation with due work and do it; False when none is due."""
    conversation_id = claim_conversation(worker_id)
    if conversation_id is None:
        return False
    try:
        work_on_conversation(conversation_id, worker_id)
    finally:
        release_conversation(conversation_id, worker_id)
    return True


def claim_conversation(worker_id: str) -> uuid.UUID | None:
    """Claim one conversation with due work, skipping those others hold."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
    # Start from the few messages awaiting work (a small partial index), not
    # from all conversations.
    waiting = set(
        Message.objects.filter(due_work(now))
        .values_list("conversation_id", flat=True)[:CANDIDATES_PER_CLAIM * 5]
    )
    if not waiting:
        return None
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    with transaction.atomic():
        candidates = list(
            Conversation.objects.filter(unclaimed, pk__in=waiting)
            .select_for_update(skip_locked=True, no_key=True)
            .values_list("pk", flat=True)[:CANDIDATES_PER_CLAIM]
        )
        if not candidates:
            return None
        chosen = random.choice(candidates)
        # A compare-and-set, so that the claim also holds on databases
        # without row locks (SQLite).
        claimed = Conversation.objects.filter(unclaimed, pk=chosen).update(
            claimed_until=lease, claimed_by=worker_id
        )
    return chosen if claimed else None


def release_conversation(conversation_id: uuid.UUID, worker_id: str) -> None:
    Conversation.objects.filter(pk=conversation_id, claimed_by=worker_id).update(
        claimed_until=None, claimed_by=""
    )


def extend_claim(conversation_id: uuid.UUID, worker_id: str) -> None:
    lease = timezone.now() + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
    Conversation.objects.filter(pk=conversation_id, claimed_by=worker_id).update(
        claimed_until=lease
    )


def work_on_conversation(conversation_id: uuid.UUID, worker_id: str) -> None:
    conversation = Conversation.objects.select_related("bot").get(pk=conversation_id)
    while True:
        answered = answer_pending(conversation)
        delivered = deliver_queued(conversation, worker_id)
        if not (answered or delivered):
            break
        extend_claim(conversation_id, worker_id)
    adapter_for(conversation.channel).after_work(conversation)


def answer_pending(conversation: Conversation) -> int:
    """Answer each pending inbound message in order; return how many."""
    pending = list(
        Message.objects.filter(
            conversation=conversation,
            direction=Message.Direction.INBOUND,
            state=Message.State.PENDING,
        ).order_by("id")
    )
    if not pending:
        return 0
    paused = bot_is_paused(conversation)
    if not paused:
        adapter_for(conversation.channel).bot_is_working(conversation)
    for message in pending:
        answer_message(conversation, message, paused=paused)
    return len(pending)


def bot_is_paused(conversation: Conversation) -> bool:
    """Whether a human answered lately, so that the bot holds back."""
    conversation.refresh_from_db(fields=["bot_paused_until"])
    paused_until = conversation.bot_paused_until
    return paused_until is not None and paused_until > timezone.now()


def answer_message(
    conversation: Conversation, message: Message, *, paused: bool
) -> None:
    if paused:
        replies: list[Reply] = []
        final_state = Message.State.HELD
    else:
        engine = engine_for(conversation.bot)
        replies = engine.respond(Inbound.from_dict(message.content))
        final_state = Message.State.HANDLED
    now = timezone.now()
    with transaction.atomic():
        marked = Message.objects.filter(
            pk=message.pk, state=Message.State.PENDING
        ).update(state=final_state)
        if not marked:
            return
        Message.objects.bulk_create(
            Message(
                conversation=conversation,
                channel=conversation.channel,
                direction=Message.Direction.OUTBOUND,
                author="bot",
                content=reply.as_dict(),
                reply_to=message,
                state=Message.State.QUEUED,
                next_attempt_at=now,
            )
            for reply in replies
        )


def deliver_queued(conversation: Conversation, worker_id: str) -> int:
    """Deliver due outbound messages in order; stop at the first that waits."""
    queued = Message.objects.filter(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        state__in=[Message.State.QUEUED, Message.State.SENDING],
    ).order_by("id")
    delivered = 0
    for message in queued:
        due_at = message.next_attempt_at
        if due_at is None or due_at > timezone.now():
            break
        if not deliver_message(message):
            break
        delivered += 1
        if delivered % 10 == 0:
            extend_claim(conversation.pk, worker_id)
    return delivered


def deliver_message(message: Message) -> bool:
    """Send one message; return whether the conversation may go on."""
    adapter = adapter_for(message.channel)
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.SENDING, attempts=message.attempts + 1
    )
    message.attempts += 1
    try:
        platform_id = adapter.deliver(message)
    except TemporaryDeliveryError as error:
        return schedule_retry(message, error)
    except PermanentDeliveryError as error:
        mark_failed(message, error.reason)
        return True
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.SENT,
        platform_message_id=platform_id,
        sent_at=timezone.now(),
        last_error="",
    )
    return True


def schedule_retry(message: Message, error: TemporaryDeliveryError) -> bool:
    if error.throttled:
        # Waiting out a platform's rate limit is not a failed attempt.
        message.attempts -= 1
        Message.objects.filter(pk=message.pk).update(attempts=message.attempts)
    elif message.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        mark_failed(message, f"gave up after {message.attempts} attempts: "
                    f"{error.reason}")
        return True
    delay = backoff_delay(message.attempts)
    if error.retry_after is not None:
        delay = max(delay, error.retry_after)
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.QUEUED,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error=error.reason[:300],
    )
    logger.info(
        "delivery of message %s failed (%s); retry %d in %.1f s",
        message.pk, error.reason, message.attempts, delay,
    )
    return False


def backoff_delay(attempts: int) -> float:
    """Exponential backoff with jitter: half fixed, half random."""
    ceiling = min(
        settings.DELIVERY_BACKOFF_CAP,
        settings.DELIVERY_BACKOFF_BASE * 2 ** (attempts - 1),
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def mark_failed(message: Message, reason: str) -> None:
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.FAILED, last_error=reason[:300], next_attempt_at=None
    )
    logger.warning("message %s could not be delivered: %s", message.pk, reason)


def next_due_in(now: datetime | None = None) -> float | None:
    """Seconds until the earliest scheduled retry, if any."""
    now = now or timezone.now()
    upcoming = (
        Message.objects.filter(
            state=Message.State.QUEUED, next_attempt_at__gt=now
        )
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if upcoming is None:
        return None
    return (upcoming - now).total_seconds()
