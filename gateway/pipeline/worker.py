"""The worker: answer pending messages and deliver the replies, in order.

A worker claims a batch of conversations with due work at a time (a short
transaction that skips rows other workers have locked, then a lease on
each row), so that each conversation is handled by one worker, in the order
its messages came. It answers every pending inbound message of the batch,
storing the replies in the same transaction that marks the messages
handled, then delivers the queued replies through the channels' adapters in
rounds: one message per conversation at a time, the conversations of the
batch side by side.

A batch takes the same few queries whether it holds one conversation or
twenty, so the busier the worker, the less database work a message costs.
`Batch` holds the steps; `process_batch` runs them one after the other, and
the runner (`gateway.pipeline.runner`) runs them from its event loop,
sending the messages of a round at the same time.
"""

from __future__ import annotations

import logging
import random
import traceback
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from botcore.messages import Inbound, Reply
from gateway.pipeline.adapters import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    adapter_for,
)
from gateway.pipeline.engines import engine_for
from gateway.pipeline.updates import value_per_row
from storage.models import Bot, Conversation, Message

logger = logging.getLogger("gateway.pipeline")
BATCH_SIZE = 50
UNFINISHED = [Message.State.QUEUED, Message.State.SENDING]
# Messages a worker has yet to answer or deliver (the partial index).
AWAITING = [Message.State.PENDING, *UNFINISHED]
HELD_BACK = (
    "not sent: a person answered in the conversation, so the bot holds back"
)
PROJECT = Path(__file__).resolve().parent.parent.parent
# What came of a delivery: the platform's id for the message, or the
# exception the adapter raised.
Outcome = str | None | Exception


def new_worker_id() -> str:
    return uuid.uuid4().hex[:16]


def process_batch(worker_id: str, limit: int = BATCH_SIZE) -> bool:
    """Claim conversations with due work and do it; False when none is due."""
    batch = begin_batch(worker_id, limit)
    if batch is None:
        return False
    try:
        while batch.round:
            batch.settle([send(message) for message in batch.round])
    finally:
        batch.release()
    return True


def process_one_conversation(worker_id: str) -> bool:
    """Claim one conversation with due work and do it; False when none is."""
    return process_batch(worker_id, limit=1)


def begin_batch(worker_id: str, limit: int = BATCH_SIZE) -> Batch | None:
    """Claim a batch, answer its pending messages and start its first round.

    A batch with nothing to send is finished at once.
    """
    batch = claim_batch(worker_id, limit)
    if batch is None:
        return None
    try:
        batch.answer()
        batch.start_round()
    except BaseException:
        batch.release()
        raise
    return batch


def claim_batch(worker_id: str, limit: int = BATCH_SIZE) -> Batch | None:
    """Claim up to `limit` conversations with due work, skipping others'."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
    # The statement updates the rows it returns: raw() runs it once.
    claimed = list(Conversation.objects.raw(claim_sql(), [
        until, worker_id, now, Message.State.PENDING, *UNFINISHED, now, limit,
    ]))
    if not claimed:
        return None
    # The bot's definition is read only to build its engine, once per
    # version of the bot.
    bots = Bot.objects.filter(pk__in={c.bot_id for c in claimed}).only("updated_at")
    versions = {bot.pk: bot for bot in bots}
    for conversation in claimed:
        conversation.bot = versions[conversation.bot_id]
    return Batch(worker_id, until, {c.pk: c for c in claimed}, size=len(claimed))


def claim_sql() -> str:
    """The claim: one statement, so that an empty one costs one round trip.

    The subquery reads the few messages awaiting work (a partial index),
    and conversations that others hold are left out before the limit, so
    that a long queue in one of them cannot hide the others. On PostgreSQL
    it skips the rows other workers have locked rather than wait for them;
    SQLite runs one writer at a time.
    """
    conversations = Conversation._meta.db_table
    messages = Message._meta.db_table
    lock = "FOR NO KEY UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    return f"""
        UPDATE {conversations} SET claimed_until = %s, claimed_by = %s
        WHERE id IN (
            SELECT id FROM {conversations}
            WHERE (claimed_until IS NULL OR claimed_until < %s)
            AND id IN (
                SELECT conversation_id FROM {messages}
                WHERE state = %s
                OR (state IN (%s, %s) AND next_attempt_at <= %s)
            )
            LIMIT %s {lock}
        )
        RETURNING *"""  # noqa: S608 - table names from the models


def claimed_by_us(
    found: list[Conversation], worker_id: str, until: datetime
) -> list[Conversation]:
    ours = set(
        Conversation.objects.filter(
            pk__in=[conversation.pk for conversation in found],
            claimed_by=worker_id,
            claimed_until=until,
        ).values_list("pk", flat=True)
    )
    return [conversation for conversation in found if conversation.pk in ours]


@dataclass
class Answer:
    """What the bot made of one inbound message."""

    message: Message
    replies: list[Reply]
    state: str
    reason: str = ""


@dataclass
class Batch:
    """A worker's lease on some conversations, and its work in them."""

    worker_id: str
    until: datetime
    conversations: dict[uuid.UUID, Conversation]
    # Each conversation's replies awaiting delivery, in order.
    queues: dict[uuid.UUID, deque[Message]] = field(default_factory=dict)
    # The messages being delivered now, one per conversation at most.
    round: list[Message] = field(default_factory=list)
    # How many conversations were claimed.
    size: int = 0
    released: bool = False

    def keep(self) -> None:
        """Renew the lease once half of it is gone; let go of those lost.

        Renewing before every step, not only between batches, keeps a slow
        delivery from outliving the lease and being sent again by another
        worker.
        """
        now = timezone.now()
        left = (self.until - now).total_seconds()
        if left > settings.WORKER_CLAIM_SECONDS / 2 or not self.conversations:
            return
        until = now + timedelta(seconds=settings.WORKER_CLAIM_SECONDS)
        held = list(self.conversations)
        renewed = Conversation.objects.filter(
            pk__in=held, claimed_by=self.worker_id
        ).update(claimed_until=until)
        self.until = until
        if renewed < len(held):
            kept = {c.pk for c in claimed_by_us(
                list(self.conversations.values()), self.worker_id, until
            )}
            for conversation_id in held:
                if conversation_id not in kept:
                    self.lose(conversation_id)

    def lose(self, conversation_id: uuid.UUID) -> None:
        """Stop working on a conversation another worker took over."""
        logger.warning(
            "worker %s lost conversation %s to another worker",
            self.worker_id, conversation_id,
        )
        self.conversations.pop(conversation_id, None)
        self.queues.pop(conversation_id, None)

    def answer(self) -> None:
        """Answer the pending messages in order; queue the replies.

        The replies awaiting delivery are read in the same query, so that
        the new ones line up behind them.
        """
        self.keep()
        pending = []
        for message in Message.objects.filter(
            conversation_id__in=list(self.conversations), state__in=AWAITING
        ).order_by("id"):
            message.conversation = self.conversations[message.conversation_id]
            if message.direction == Message.Direction.INBOUND:
                pending.append(message)
            else:
                self.queue(message)
        replies = store_answers(self.answers(pending))
        if any(reply.pk is None for reply in replies):
            # A database that does not return the ids of inserted rows.
            self.queues.clear()
            self.read_queues()
        for reply in replies:
            self.queue(reply)

    def answers(self, pending: list[Message]) -> list[Answer]:
        now = timezone.now()
        answers, working = [], set()
        for message in pending:
            conversation = self.conversations[message.conversation_id]
            paused = is_paused(conversation, now)
            if not paused and conversation.pk not in working:
                working.add(conversation.pk)
                call_adapter_hook(conversation, "bot_is_working")
            answers.append(answer_message(conversation, message, paused=paused))
        return answers

    def queue(self, message: Message) -> None:
        """Line a message up for delivery in its conversation."""
        if message.pk is not None:
            self.queues.setdefault(message.conversation_id, deque()).append(message)

    def read_queues(self) -> None:
        """Read the replies awaiting delivery in the batch's conversations."""
        for message in Message.objects.filter(
            conversation_id__in=list(self.conversations),
            direction=Message.Direction.OUTBOUND,
            state__in=UNFINISHED,
        ).order_by("id"):
            message.conversation = self.conversations[message.conversation_id]
            self.queue(message)

    def start_round(self) -> None:
        """Take the next due message of each conversation and start it.

        With nothing left to send, the batch is finished.
        """
        self.keep()
        now = timezone.now()
        heads = []
        for conversation_id in list(self.queues):
            head = self.next_due(conversation_id, now)
            if head is None:
                del self.queues[conversation_id]
            else:
                heads.append(head)
        self.round = self.start_sending(heads)
        if not self.round:
            self.finish()
            return
        by_channel: dict[str, list[Message]] = defaultdict(list)
        for message in self.round:
            by_channel[message.channel].append(message)
        for channel, messages in by_channel.items():
            call_batch_hook(channel, "prepare", messages)

    def next_due(self, conversation_id: uuid.UUID, now: datetime) -> Message | None:
        """The conversation's next message to send, if one is due."""
        queue = self.queues[conversation_id]
        paused = is_paused(self.conversations[conversation_id], now)
        while queue:
            message = queue[0]
            if paused and message.author == "bot" and message.state == "queued":
                # Queued before a person took the conversation over.
                mark_failed(message, HELD_BACK)
                queue.popleft()
                continue
            waits_until = message.next_attempt_at
            if waits_until is not None and waits_until > now:
                hold_back_behind(message, waits_until)
                return None
            return message
        return None

    def start_sending(self, messages: list[Message]) -> list[Message]:
        """Count an attempt at each message; return those this worker sends.

        The attempt is counted with a compare-and-set: of two workers that
        read the same row, only one sends it. Until the lease ends, a
        message being sent is not due for anybody else.
        """
        if not messages:
            return []
        by_attempts: dict[int, list[int]] = defaultdict(list)
        for message in messages:
            by_attempts[message.attempts].append(message.pk)
        unchanged = reduce(or_, (
            Q(pk__in=pks, attempts=attempts) for attempts, pks in by_attempts.items()
        ))
        started = Message.objects.filter(unchanged, state__in=UNFINISHED).update(
            state=Message.State.SENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=self.until,
        )
        if started < len(messages):
            messages = self.started_by_us(messages)
        for message in messages:
            message.attempts += 1
        return messages

    def started_by_us(self, messages: list[Message]) -> list[Message]:
        """Of messages some of which another worker took, those still ours."""
        ours = set(
            Message.objects.filter(
                pk__in=[message.pk for message in messages],
                state=Message.State.SENDING,
                next_attempt_at=self.until,
            ).values_list("pk", "attempts")
        )
        kept = []
        for message in messages:
            if (message.pk, message.attempts + 1) in ours:
                kept.append(message)
            else:
                self.lose(message.conversation_id)
        return kept

    def settle(self, outcomes: list[Outcome]) -> None:
        """Record what came of the round's deliveries; start the next round."""
        sent = []
        for message, outcome in zip(self.round, outcomes, strict=True):
            queue = self.queues[message.conversation_id]
            if not isinstance(outcome, Exception):
                sent.append((message, outcome))
                queue.popleft()
                continue
            retry_at = delivery_failed(message, outcome)
            if retry_at is None:
                queue.popleft()
            else:
                hold_back_behind(message, retry_at)
                del self.queues[message.conversation_id]
        mark_sent(sent)
        self.start_round()

    def finish(self) -> None:
        """Call the adapters' after-work hooks, then release the claim."""
        by_channel: dict[str, list[Conversation]] = defaultdict(list)
        for conversation in self.conversations.values():
            by_channel[conversation.channel].append(conversation)
        for channel, conversations in by_channel.items():
            call_batch_hook(channel, "after_work", conversations)
        self.release()

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        Conversation.objects.filter(
            pk__in=list(self.conversations), claimed_by=self.worker_id
        ).update(claimed_until=None, claimed_by="")


def is_paused(conversation: Conversation, now: datetime) -> bool:
    """Whether a human answered lately, so that the bot holds back."""
    paused_until = conversation.bot_paused_until
    return paused_until is not None and paused_until > now


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


def call_batch_hook(channel: str, hook: str, items: Sequence[object]) -> None:
    """Call an adapter's hook for many messages or conversations at once.

    Its failure stops nothing: `prepare` only saves each delivery a read,
    and `after_work` matters less than the messages.
    """
    try:
        getattr(adapter_for(channel), hook)(items)
    except DatabaseError:
        raise
    except Exception as error:  # noqa: BLE001 - see above
        logger.warning(
            "%s for %d %s item(s) failed (%s)",
            hook, len(items), channel, where_raised(error),
        )


def answer_message(
    conversation: Conversation, message: Message, *, paused: bool
) -> Answer:
    if paused:
        return Answer(message, [], Message.State.HELD)
    try:
        replies = bot_replies(conversation, message)
    except DatabaseError:
        raise
    except Exception as error:  # noqa: BLE001 - a bot's fault, not the queue's
        logger.error(
            "bot %s could not answer message %s: %s",
            conversation.bot_id, message.pk, where_raised(error),
        )
        reason = f"the bot could not answer: {type(error).__name__}"
        return Answer(message, [], Message.State.FAILED, reason)
    return Answer(message, replies, Message.State.HANDLED)


def bot_replies(conversation: Conversation, message: Message) -> list[Reply]:
    engine = engine_for(conversation.bot)
    return engine.respond(Inbound.from_dict(message.content))


class AnswerTakenOver(Exception):
    """A message answered in a batch was no longer pending."""


def store_answers(answers: list[Answer]) -> list[Message]:
    """Mark messages answered and queue their replies, in one transaction.

    Return the replies queued, in order. A message no longer pending was
    answered by a worker that took its conversation over: the answers are
    then stored one by one, so that only that message's replies are
    dropped.
    """
    if not answers:
        return []
    try:
        with transaction.atomic():
            if mark_answered(answers) < len(answers):
                raise AnswerTakenOver
            return Message.objects.bulk_create(
                [reply for answer in answers for reply in reply_rows(answer)]
            )
    except AnswerTakenOver:
        return [reply for answer in answers for reply in store_answer(answer)]


def store_answer(answer: Answer) -> list[Message]:
    """Mark one message answered and queue its replies, in a transaction."""
    with transaction.atomic():
        if not mark_answered([answer]):
            return []
        return Message.objects.bulk_create(reply_rows(answer))


def mark_answered(answers: list[Answer]) -> int:
    """Mark still pending messages with their outcome; return how many."""
    by_outcome: dict[tuple[str, str], list[int]] = defaultdict(list)
    for answer in answers:
        by_outcome[(answer.state, answer.reason)].append(answer.message.pk)
    return sum(
        Message.objects.filter(pk__in=pks, state=Message.State.PENDING).update(
            state=state, last_error=reason
        )
        for (state, reason), pks in by_outcome.items()
    )


def reply_rows(answer: Answer) -> list[Message]:
    now = timezone.now()
    return [
        Message(
            conversation=answer.message.conversation,
            channel=answer.message.channel,
            direction=Message.Direction.OUTBOUND,
            author="bot",
            content=reply.as_dict(),
            reply_to=answer.message,
            state=Message.State.QUEUED,
            next_attempt_at=now,
        )
        for reply in answer.replies
    ]


def send(message: Message) -> Outcome:
    """Deliver one message through its channel's adapter; say what came."""
    try:
        return adapter_for(message.channel).deliver(message)
    except Exception as error:  # noqa: BLE001 - settled by the worker
        return error


def delivery_failed(message: Message, error: Exception) -> datetime | None:
    """Deal with a failed delivery; return when to retry, None to go on."""
    if isinstance(error, TemporaryDeliveryError):
        return schedule_retry(message, error)
    if isinstance(error, PermanentDeliveryError):
        mark_failed(message, error.reason)
        return None
    logger.error(
        "delivery of message %s raised %s", message.pk, where_raised(error)
    )
    failure = TemporaryDeliveryError(f"unexpected {type(error).__name__}")
    return schedule_retry(message, failure)


def mark_sent(sent: list[tuple[Message, str | None]]) -> None:
    """Record delivered messages and the platform's ids, in one statement."""
    if not sent:
        return
    platform_ids = {message.pk: platform_id for message, platform_id in sent}
    Message.objects.filter(pk__in=list(platform_ids)).update(
        state=Message.State.SENT,
        platform_message_id=value_per_row(
            Message, "platform_message_id", platform_ids
        ),
        sent_at=timezone.now(),
        next_attempt_at=None,
        last_error="",
    )


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
