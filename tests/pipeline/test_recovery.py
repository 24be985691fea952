"""Failures inside the worker stop one message at most, never the queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from gateway.pipeline.inbound import accept_inbound
from gateway.pipeline.worker import (
    claim_batch,
    new_worker_id,
    process_one_conversation,
)
from storage.models import Conversation, Message
from tests.conftest import wait_until
from tests.support.pipeline import drain, drained_then, inbound, outbound, text
from tests.support.recorder import NOT_JSON, Recorder

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_retry_holds_back_later_replies_and_leaves_nothing_due(
    conversation: Conversation, recorder: Recorder, settings: Any
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 60
    recorder.failures = [503]
    accept_inbound(conversation, text("opening hours"))
    accept_inbound(conversation, text("something else"))
    drain()
    first, second = outbound(conversation)
    assert (first.state, second.state) == ("queued", "queued")
    assert first.next_attempt_at is not None
    assert first.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert second.next_attempt_at == first.next_attempt_at
    # Nothing is due, so no worker claims the conversation again and again.
    assert claim_batch(new_worker_id()) is None
    assert recorder.deliveries == []


def test_a_long_queue_in_a_claimed_conversation_hides_no_other(
    conversation: Conversation, recorder: Recorder
) -> None:
    for number in range(120):
        accept_inbound(conversation, text(f"question {number}"))
    busy = claim_batch(new_worker_id())
    assert busy is not None and list(busy.conversations) == [conversation.pk]
    other = Conversation.objects.create(bot=conversation.bot, channel="loopback")
    accept_inbound(other, text("opening hours"))
    claim = claim_batch(new_worker_id())
    assert claim is not None and list(claim.conversations) == [other.pk]


def test_an_unexpected_adapter_error_is_retried_then_failed_with_a_reason(
    conversation: Conversation, recorder: Recorder, settings: Any
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 0.01
    settings.DELIVERY_MAX_ATTEMPTS = 3
    recorder.failures = [NOT_JSON] * 3
    accept_inbound(conversation, text("opening hours"))
    wait_until(drained_then(outbound(conversation).filter(state="failed").exists))
    [reply] = outbound(conversation)
    assert reply.attempts == 3
    assert reply.last_error == "gave up after 3 attempts: unexpected JSONDecodeError"


def test_an_unexpected_adapter_error_is_logged_without_its_text(
    conversation: Conversation, recorder: Recorder, caplog: Any
) -> None:
    recorder.failures = [NOT_JSON]
    accept_inbound(conversation, text("opening hours"))
    with caplog.at_level("ERROR", logger="gateway.pipeline"):
        drain()
    [record] = [r for r in caplog.records if "raised" in r.getMessage()]
    assert record.getMessage().startswith("delivery of message ")
    assert "JSONDecodeError at tests/support/loopback.py:" in record.getMessage()
    assert record.exc_info is None


def test_a_bot_that_cannot_answer_fails_that_message_only(
    conversation: Conversation, recorder: Recorder
) -> None:
    bot = conversation.bot
    good_dialogues = bot.dialogues
    type(bot).objects.filter(pk=bot.pk).update(dialogues=[{"samples": "broken"}])
    accept_inbound(conversation, text("opening hours"))
    drain()
    [broken] = inbound(conversation)
    assert broken.state == Message.State.FAILED
    assert broken.last_error == "the bot could not answer: BotFileError"
    assert not outbound(conversation).exists()

    bot.dialogues = good_dialogues
    bot.save()
    accept_inbound(conversation, text("opening hours"))
    drain()
    assert [d["content"]["text"] for d in recorder.deliveries] == ["9 to 17."]


def test_a_worker_whose_claim_was_taken_over_stops(
    conversation: Conversation, recorder: Recorder, caplog: Any
) -> None:
    accept_inbound(conversation, text("opening hours"))
    first = claim_batch(new_worker_id())
    assert first is not None
    # The first worker stalls past its lease; a second one takes over.
    Conversation.objects.filter(pk=conversation.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    first.until = timezone.now()
    second = claim_batch(new_worker_id())
    assert second is not None and list(second.conversations) == [conversation.pk]
    with caplog.at_level("WARNING", logger="gateway.pipeline"):
        first.answer()
    assert first.conversations == {}
    assert "lost conversation" in caplog.text
    assert inbound(conversation).get().state == Message.State.PENDING


def test_a_message_being_sent_is_not_due_for_another_worker(
    conversation: Conversation, recorder: Recorder
) -> None:
    recorder.delay = 1.5
    accept_inbound(conversation, text("opening hours"))

    def work() -> None:
        try:
            process_one_conversation(new_worker_id())
        finally:
            connection.close()

    sender = threading.Thread(target=work)
    sender.start()
    wait_until(lambda: outbound(conversation).filter(state="sending").exists())
    # The lease of the first worker is over for the database, but the row
    # it is sending stays out of reach until its own lease would have ended.
    Conversation.objects.filter(pk=conversation.pk).update(
        claimed_until=None, claimed_by=""
    )
    assert not process_one_conversation(new_worker_id())
    sender.join()
    assert len(recorder.deliveries) == 1
    [reply] = outbound(conversation)
    assert reply.state == Message.State.SENT


def test_a_conversation_another_worker_holds_is_passed_over_without_waiting(
    conversation: Conversation, recorder: Recorder
) -> None:
    """On PostgreSQL the other worker holds a row lock, elsewhere a lease."""
    accept_inbound(conversation, text("opening hours"))
    other = Conversation.objects.create(bot=conversation.bot, channel="loopback")
    accept_inbound(other, text("opening hours"))
    with held_by_another_worker(conversation):
        claim = claim_batch(new_worker_id())
    assert claim is not None and list(claim.conversations) == [other.pk]


@contextmanager
def held_by_another_worker(conversation: Conversation) -> Iterator[None]:
    if connection.vendor != "postgresql":
        Conversation.objects.filter(pk=conversation.pk).update(
            claimed_by="other", claimed_until=timezone.now() + timedelta(minutes=1)
        )
        yield
        return
    locked, done = threading.Event(), threading.Event()

    def hold_row_lock() -> None:
        try:
            with transaction.atomic():
                Conversation.objects.select_for_update(no_key=True).get(
                    pk=conversation.pk
                )
                locked.set()
                done.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_row_lock)
    holder.start()
    assert locked.wait(10)
    try:
        # A claim that waited on the lock would fail here instead.
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 2000")
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        done.set()
        holder.join()
