"""The pipeline never loses nor duplicates a message, whatever happens."""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from gateway.pipeline.inbound import Received, accept_inbound, accept_many
from gateway.pipeline.worker import HELD_BACK
from storage.human_replies import queue_human_reply
from storage.models import Bot, Conversation, Message
from tests.conftest import wait_until
from tests.support.pipeline import (
    drain,
    drained_then,
    outbound,
    output_has,
    text,
    worker_env,
)
from tests.support.recorder import Recorder


def test_message_is_answered_and_delivered(
    conversation: Conversation, recorder: Recorder
) -> None:
    accepted = accept_inbound(conversation, text("when are you open?"))
    drain()
    accepted.message.refresh_from_db()
    assert accepted.message.state == Message.State.HANDLED
    [reply] = outbound(conversation)
    assert reply.state == Message.State.SENT
    assert reply.platform_message_id == "lb-1"
    assert recorder.deliveries[0]["content"]["text"] == "9 to 17."


def test_same_platform_id_concurrently_is_stored_and_answered_once(
    conversation: Conversation, recorder: Recorder
) -> None:
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def deliver_again() -> None:
        barrier.wait()
        try:
            accepted = accept_inbound(
                conversation, text("opening hours"), platform_message_id="m-1"
            )
            results.append(accepted.created)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_again) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert Message.objects.filter(platform_message_id="m-1").count() == 1
    drain()
    accept_inbound(conversation, text("opening hours"), platform_message_id="m-1")
    drain()
    assert len(recorder.deliveries) == 1


def test_same_client_id_returns_the_same_message(
    conversation: Conversation, recorder: Recorder
) -> None:
    first = accept_inbound(conversation, text("hi"), client_id="c-1")
    again = accept_inbound(conversation, text("hi"), client_id="c-1")
    assert again.message.pk == first.message.pk
    assert (first.created, again.created) == (True, False)


def test_a_batch_is_stored_in_order_once_per_id(
    conversation: Conversation, recorder: Recorder
) -> None:
    earlier = accept_inbound(conversation, text("hi"), client_id="c-1")
    other = Conversation.objects.create(bot=conversation.bot, channel="loopback")
    accepted = accept_many([
        Received(conversation, text("hi"), client_id="c-1"),
        Received(conversation, text("opening hours"), platform_message_id="m-1"),
        Received(other, text("hi"), client_id="c-1"),
        Received(conversation, text("opening hours"), platform_message_id="m-1"),
        Received(conversation, text("something else")),
    ])
    assert [each.created for each in accepted] == [False, True, True, False, True]
    assert accepted[0].message.pk == earlier.message.pk
    assert accepted[3].message.pk == accepted[1].message.pk
    new_ids = [accepted[index].message.pk for index in (1, 2, 4)]
    assert new_ids == sorted(new_ids)
    assert Message.objects.count() == 4
    assert Message.objects.filter(platform_message_id="m-1").count() == 1
    assert Conversation.objects.filter(last_inbound_at__isnull=False).count() == 2
    drain()
    assert len(recorder.deliveries) == 4


def test_a_duplicate_stored_meanwhile_fails_the_whole_batch(
    conversation: Conversation,
) -> None:
    stored_meanwhile: list[bool] = []

    def race(execute: Any, sql: str, *args: Any) -> Any:
        # Another request stores c-2 after the batch looked for duplicates.
        if "INSERT" in sql.upper() and not stored_meanwhile:
            stored_meanwhile.append(True)
            accept_inbound(conversation, text("hi"), client_id="c-2")
        return execute(sql, *args)

    batch = [
        Received(conversation, text(f"question {n}"), client_id=f"c-{n}")
        for n in (1, 2, 3)
    ]
    with connection.execute_wrapper(race), pytest.raises(IntegrityError):
        accept_many(batch)
    assert not Message.objects.filter(client_id__in=["c-1", "c-3"]).exists()


def test_temporary_failures_are_retried_with_backoff(
    conversation: Conversation, recorder: Recorder, settings: Any
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 0.05
    recorder.failures = [503, 502]
    accept_inbound(conversation, text("opening hours"))
    wait_until(drained_then(lambda: recorder.deliveries), timeout=10)
    [reply] = outbound(conversation)
    assert reply.state == Message.State.SENT
    assert reply.attempts == 3
    assert len(recorder.deliveries) == 1


def test_permanent_failure_is_recorded_with_its_reason(
    conversation: Conversation, recorder: Recorder
) -> None:
    recorder.failures = [400]
    accept_inbound(conversation, text("opening hours"))
    drain()
    [reply] = outbound(conversation)
    assert reply.state == Message.State.FAILED
    assert reply.last_error == "HTTP 400"
    assert recorder.deliveries == []


def test_giving_up_after_the_last_attempt(
    conversation: Conversation, recorder: Recorder, settings: Any
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 0.01
    settings.DELIVERY_MAX_ATTEMPTS = 3
    recorder.failures = [500] * 10
    accept_inbound(conversation, text("opening hours"))
    wait_until(drained_then(outbound(conversation).filter(state="failed").exists))
    [reply] = outbound(conversation)
    assert reply.last_error == "gave up after 3 attempts: HTTP 500"


def test_replies_wait_behind_a_failed_delivery_to_keep_order(
    conversation: Conversation, recorder: Recorder, settings: Any
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 0.05
    recorder.failures = [503]
    first = accept_inbound(conversation, text("opening hours")).message
    second = accept_inbound(conversation, text("something else")).message
    wait_until(drained_then(lambda: len(recorder.deliveries) == 2), timeout=10)
    assert recorder.reply_to_ids() == [first.pk, second.pk]


def test_held_conversation_stores_but_does_not_answer(
    conversation: Conversation, recorder: Recorder
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    conversation.bot_paused_until = timezone.now() + timedelta(minutes=5)
    conversation.save()
    accepted = accept_inbound(conversation, text("opening hours"))
    drain()
    accepted.message.refresh_from_db()
    assert accepted.message.state == Message.State.HELD
    assert not outbound(conversation).exists()


def test_lost_doorbell_is_recovered_by_the_startup_sweep(
    conversation: Conversation, recorder: Recorder, start_worker: Any
) -> None:
    # Stored with no worker running and no ring at all.
    accept_inbound(conversation, text("opening hours"))
    start_worker(worker_env(recorder))
    wait_until(lambda: recorder.deliveries, timeout=30)
    assert len(recorder.deliveries) == 1


def test_lost_doorbell_is_recovered_by_the_idle_sweep(
    conversation: Conversation, recorder: Recorder, start_worker: Any
) -> None:
    worker = start_worker(worker_env(recorder, WORKER_SWEEP_SECONDS="1"))
    wait_until(lambda: "started" in worker.output(), timeout=30)
    # Past the sweep a worker makes as it starts: only an idle one is left.
    time.sleep(2)
    accept_inbound(conversation, text("opening hours"))
    wait_until(lambda: recorder.deliveries, timeout=30)
    assert len(recorder.deliveries) == 1


def test_worker_killed_before_delivering_delivers_once_after_restart(
    conversation: Conversation, recorder: Recorder, start_worker: Any
) -> None:
    env = worker_env(recorder, WORKER_CLAIM_SECONDS="2")
    stalled = start_worker({**env, "LOOPBACK_STALL_BEFORE_SEND": "1"})
    accept_inbound(conversation, text("opening hours"))
    wait_until(
        lambda: outbound(conversation).filter(state="sending").exists(), timeout=30
    )
    stalled.kill()
    assert recorder.deliveries == []
    start_worker(env)
    wait_until(lambda: recorder.deliveries, timeout=30)
    wait_until(lambda: outbound(conversation).filter(state="sent").exists())
    assert len(recorder.deliveries) == 1


def test_two_workers_answer_a_burst_in_order_each_once(
    conversation: Conversation, recorder: Recorder, start_worker: Any
) -> None:
    from gateway.pipeline.doorbell import ring_sync

    env = worker_env(recorder)
    workers = [start_worker(env), start_worker(env)]
    for worker in workers:
        wait_until(partial(output_has, worker, "started"), timeout=30)
    inbound_ids = []
    for number in range(30):
        accepted = accept_inbound(conversation, text(f"question {number}"))
        inbound_ids.append(accepted.message.pk)
        ring_sync()
    wait_until(lambda: len(recorder.deliveries) >= 30, timeout=60)
    assert recorder.reply_to_ids() == inbound_ids
    assert Bot.objects.count() == 1


def test_a_bot_reply_still_queued_gives_way_to_a_persons_reply(
    conversation: Conversation, recorder: Recorder
) -> None:
    recorder.failures = [503]
    accept_inbound(conversation, text("opening hours"))
    drain()
    [waiting] = outbound(conversation)
    assert waiting.state == Message.State.QUEUED
    person = queue_human_reply(conversation.pk, "Ola here: we open at nine.")
    Message.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
    drain()
    waiting.refresh_from_db()
    assert (waiting.state, waiting.last_error) == (Message.State.FAILED, HELD_BACK)
    assert [d["message"] for d in recorder.deliveries] == [person.pk]
