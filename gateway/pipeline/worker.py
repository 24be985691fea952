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
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
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
UNFINISHED = [Message.State.QUEUED, Message.State.SENDING]
HELD_BACK = (
    "not sent: a person answered in the conversation, so the bot holds back"
)
PROJECT = Path(__file__).resolve().parent.parent.parent


class ClaimLost(Exception):
    """Another worker took the conversation over: stop working on it."""


@dataclass
class Claim:
    """A worker's lease on one conversation."""

    conversation_id: uuid.UUID
    worker_id: str
    until: datetime

    def keep(self) -> None:
        """Renew the lease once half of it is gone; raise ClaimLost if taken.

        Renewing before every step, not only between passes, keeps a slow
        delivery from outliving the lease and being sent again by another
        worker.
        """
        now = timezone.now()
        left = (self.until - now).total_seconds()
        if left > settings.WORKER_CLAIM_SECONDS / 2:
            return
        until = now + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
        renewed = Conversation.objects.filter(
            pk=self.conversation_id, claimed_by=self.worker_id
        ).update(claimed_until=until)
        if not renewed:
            raise ClaimLost(self.conversation_id)
        self.until = until


def new_worker_id() -> str:
    return uuid.uuid4().hex[:16]


def due_work(now: datetime) -> Q:
    """Messages that need a worker now."""
    return Q(state=Message.State.PENDING) | Q(
        state__in=UNFINISHED, next_attempt_at__lte=now
    )


def process_one_conversation(worker_id: str) -> bool:
    """Claim a conversation with due work and do it; False when none is due."""
    claim = claim_conversation(worker_id)
    if claim is None:
        return False
    try:
        work_on_conversation(claim)
    except ClaimLost:
        logger.warning(
            "worker %s lost conversation %s to another worker",
            worker_id, claim.conversation_id,
        )
    finally:
        release_conversation(claim)
    return True


def claim_conversation(worker_id: str) -> Claim | None:
    """Claim one conversation with due work, skipping those others hold."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    # The subquery reads the few messages awaiting work (a partial index),
    # and conversations that others hold are left out before the limit, so
    # that a long queue in one of them cannot hide the others.
    waiting = Message.objects.filter(due_work(now)).values("conversation_id")
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
            claimed_until=until, claimed_by=worker_id
        )
    return Claim(chosen, worker_id, until) if claimed else None


def release_conversation(claim: Claim) -> None:
    Conversation.objects.filter(
        pk=claim.conversation_id, claimed_by=claim.worker_id
    ).update(claimed_until=None, claimed_by="")


def work_on_conversation(claim: Claim) -> None:
    conversation = Conversation.objects.select_related("bot").get(
        pk=claim.conversation_id
    )
    while True:
        answered = answer_pending(conversation, claim)
        delivered = deliver_queued(conversation, claim)
        if not (answered or delivered):
            break
    call_adapter_hook(conversation, "after_work")


def answer_pending(conversation: Conversation, claim: Claim) -> int:
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
        call_adapter_hook(conversation, "bot_is_working")
    for message in pending:
        claim.keep()
        answer_message(conversation, message, paused=paused)
    return len(pending)


def bot_is_paused(conversation: Conversation) -> bool:
    """Whether a human answered lately, so that the bot holds back."""
    conversation.refresh_from_db(fields=["bot_paused_until"])
    paused_until = conversation.bot_paused_until
    return paused_until is not None and paused_until > timezone.now()


def call_adapter_hook(conversation: Conversation, hook: str) -> None:
    """Call one of the adapter's optional hooks; its failure stops nothing."""
    try:
        getattr(adapter_for(conversation.channel), hook)(conversation)
    except DatabaseError:
        raise
    except Exception as error:  # noqa: BLE001 - the messages matter more
        logger.warning(
            "conversation %s: %s failed (%s)",
            conversation.pk, hook, where_raised(error),
        )


def answer_message(
    conversation: Conversation, message: Message, *, paused: bool
) -> None:
    replies: list[Reply] = []
    final_state, reason = Message.State.HELD, ""
    if not paused:
        try:
            replies = bot_replies(conversation, message)
            final_state = Message.State.HANDLED
        except DatabaseError:
            raise
        except Exception as error:  # noqa: BLE001 - a bot's fault, not the queue's
            final_state = Message.State.FAILED
            reason = f"the bot could not answer: {type(error).__name__}"
            logger.error(
                "bot %s could not answer message %s: %s",
                conversation.bot_id, message.pk, where_raised(error),
            )
    store_answer(conversation, message, replies, final_state, reason)


def bot_replies(conversation: Conversation, message: Message) -> list[Reply]:
    engine = engine_for(conversation.bot)
    return engine.respond(Inbound.from_dict(message.content))


def store_answer(
    conversation: Conversation,
    message: Message,
    replies: list[Reply],
    final_state: str,
    reason: str,
) -> None:
    """Mark the message answered and queue its replies, in one transaction."""
    now = timezone.now()
    with transaction.atomic():
        marked = Message.objects.filter(
            pk=message.pk, state=Message.State.PENDING
        ).update(state=final_state, last_error=reason)
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


def deliver_queued(conversation: Conversation, claim: Claim) -> int:
    """Deliver due outbound messages in order; stop at the first that waits."""
    queued = list(
        Message.objects.filter(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            state__in=UNFINISHED,
        ).order_by("id")
    )
    paused = bool(queued) and bot_is_paused(conversation)
    delivered = 0
    for message in queued:
        if paused and message.author == "bot" and message.state == "queued":
            # Queued before a person took the conversation over.
            mark_failed(message, HELD_BACK)
            continue
        waits_until = message.next_attempt_at
        if waits_until is None or waits_until <= timezone.now():
            waits_until = deliver_message(message, claim)
        if waits_until is not None:
            hold_back_behind(message, waits_until)
            break
        delivered += 1
    return delivered


def hold_back_behind(message: Message, until: datetime) -> None:
    """Make the later replies of a conversation wait for a retried one.

    They could not go out before it anyway; leaving them due would only
    make workers claim the conversation again and again until then.
    """
    Message.objects.filter(
        conversation_id=message.conversation_id,
        direction=Message.Direction.OUTBOUND,
        state__in=UNFINISHED,
        id__gt=message.pk,
        next_attempt_at__lt=until,
    ).update(next_attempt_at=until)


def deliver_message(message: Message, claim: Claim) -> datetime | None:
    """Send one message; return when to retry it, or None to go on."""
    claim.keep()
    # The attempt is counted with a compare-and-set: of two workers that
    # read the same row, only one sends it. Until the lease ends, a message
    # being sent is not due for anybody else.
    started = Message.objects.filter(
        pk=message.pk, attempts=message.attempts, state__in=UNFINISHED
    ).update(
        state=Message.State.SENDING,
        attempts=F("attempts") + 1,
        next_attempt_at=claim.until,
    )
    if not started:
        raise ClaimLost(claim.conversation_id)
    message.attempts += 1
    try:
        platform_id = adapter_for(message.channel).deliver(message)
    except TemporaryDeliveryError as error:
        return schedule_retry(message, error)
    except PermanentDeliveryError as error:
        mark_failed(message, error.reason)
        return None
    except Exception as error:  # noqa: BLE001 - retried, then failed with a reason
        logger.error(
            "delivery of message %s raised %s", message.pk, where_raised(error)
        )
        failure = TemporaryDeliveryError(f"unexpected {type(error).__name__}")
        return schedule_retry(message, failure)
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.SENT,
        platform_message_id=platform_id,
        sent_at=timezone.now(),
        next_attempt_at=None,
        last_error="",
    )
    return None


def schedule_retry(
    message: Message, error: TemporaryDeliveryError
) -> datetime | None:
    """Queue the message again after a backoff; None once it has failed."""
    if error.throttled:
        # Waiting out a platform's rate limit is not a failed attempt.
        message.attempts -= 1
    elif message.attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        mark_failed(
            message, f"gave up after {message.attempts} attempts: {error.reason}"
        )
        return None
    delay = backoff_delay(max(1, message.attempts))
    if error.retry_after is not None:
        delay = max(delay, error.retry_after)
    retry_at = timezone.now() + timedelta(seconds=delay)
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.QUEUED,
        attempts=message.attempts,
        next_attempt_at=retry_at,
        last_error=error.reason[:300],
    )
    logger.info(
        "delivery of message %s failed (%s); retry %d in %.1f s",
        message.pk, error.reason, message.attempts, delay,
    )
    return retry_at


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


def where_raised(error: BaseException) -> str:
    """Name an exception and the line of ours that raised it, and no more.

    An exception's own text may quote what a person wrote or a token, so it
    is never logged.
    """
    place = ""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(PROJECT) and ".venv" not in path.parts:
            place = f" at {path.relative_to(PROJECT)}:{frame.lineno}"
            break
    return f"{type(error).__name__}{place}"


def next_due_in(now: datetime | None = None) -> float | None:
    """Seconds until the earliest scheduled retry, if any."""
    now = now or timezone.now()
    upcoming = (
        Message.objects.filter(state__in=UNFINISHED, next_attempt_at__gt=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if upcoming is None:
        return None
    return (upcoming - now).total_seconds()
