"""A worker takes conversations in batches and sends a round at once."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from gateway.pipeline import runner as runner_module
from gateway.pipeline.inbound import accept_inbound
from gateway.pipeline.runner import IdleSlots, WorkerRunner
from gateway.pipeline.updates import value_per_row
from gateway.pipeline.worker import (
    BATCH_SIZE,
    begin_batch,
    claim_batch,
    new_worker_id,
    process_batch,
)
from storage.models import Conversation, Message
from tests.support.loopback import LoopbackAdapter
from tests.support.pipeline import inbound, outbound, text
from tests.support.recorder import Recorder

pytestmark = pytest.mark.usefixtures("transactional_db")


def more_conversations(conversation: Conversation, count: int) -> list[Conversation]:
    return [conversation] + [
        Conversation.objects.create(bot=conversation.bot, channel="loopback")
        for _ in range(count - 1)
    ]


def test_one_claim_answers_several_conversations_each_in_order(
    conversation: Conversation, recorder: Recorder
) -> None:
    conversations = more_conversations(conversation, 3)
    asked = {
        chat.pk: [accept_inbound(chat, text(f"question {n}")).message.pk
                  for n in range(2)]
        for chat in conversations
    }

    assert process_batch(new_worker_id())

    assert len(recorder.deliveries) == 6
    for chat in conversations:
        answered = [d["reply_to"] for d in recorder.deliveries
                    if d["conversation"] == str(chat.pk)]
        assert answered == asked[chat.pk]
        assert {m.state for m in outbound(chat)} == {Message.State.SENT}
    assert not Conversation.objects.exclude(claimed_by="").exists()


def test_a_batch_holds_at_most_a_batch_of_conversations(
    conversation: Conversation, recorder: Recorder
) -> None:
    for chat in more_conversations(conversation, BATCH_SIZE + 3):
        accept_inbound(chat, text("opening hours"))

    first = claim_batch(new_worker_id())
    second = claim_batch(new_worker_id())

    assert first is not None and second is not None
    assert (len(first.conversations), len(second.conversations)) == (BATCH_SIZE, 3)
    assert not set(first.conversations) & set(second.conversations)
    assert claim_batch(new_worker_id()) is None


def test_an_answer_taken_over_meanwhile_drops_only_its_replies(
    conversation: Conversation, recorder: Recorder
) -> None:
    other = more_conversations(conversation, 2)[1]
    taken = accept_inbound(conversation, text("opening hours")).message
    accept_inbound(other, text("opening hours"))
    batch = claim_batch(new_worker_id())
    assert batch is not None
    # Another worker answered it after this one claimed the conversation.
    Message.objects.filter(pk=taken.pk).update(state=Message.State.HANDLED)

    batch.answer()

    assert not outbound(conversation).exists()
    assert outbound(other).count() == 1
    assert inbound(other).get().state == Message.State.HANDLED


def test_replies_go_out_in_the_same_batch_without_returned_ids(
    conversation: Conversation, recorder: Recorder, monkeypatch: Any
) -> None:
    """A database that does not return the ids of inserted rows."""
    monkeypatch.setattr(
        type(connection.features), "can_return_rows_from_bulk_insert", False
    )
    accept_inbound(conversation, text("opening hours"))

    assert process_batch(new_worker_id())

    assert [d["content"]["text"] for d in recorder.deliveries] == ["9 to 17."]


@pytest.fixture
def four_waiting(conversation: Conversation) -> list[Conversation]:
    conversations = more_conversations(conversation, 4)
    for chat in conversations:
        accept_inbound(chat, text("opening hours"))
    return conversations


async def test_the_messages_of_a_round_are_sent_at_once(
    four_waiting: list[Conversation], recorder: Recorder
) -> None:
    recorder.delay = 1.0
    runner = WorkerRunner(concurrency=1)

    started = time.monotonic()
    worked = await runner.work_once()
    took = time.monotonic() - started

    assert worked == 4
    assert len(recorder.deliveries) == 4
    # One after the other, the four sends would take four seconds.
    assert took < 2.5
    await runner.shut_down()


async def test_slots_claim_one_at_a_time_and_share_what_came_meanwhile(
    four_waiting: list[Conversation],
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claiming, most = [0], [0]
    lock = threading.Lock()

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            claiming[0] += 1
            most[0] = max(most[0], claiming[0])
        try:
            time.sleep(0.2)
            return begin_batch(*args, **kwargs)
        finally:
            with lock:
                claiming[0] -= 1

    monkeypatch.setattr(runner_module, "begin_batch", counted)
    runner = WorkerRunner(concurrency=4)
    worked = await asyncio.gather(*(runner.work_once() for _ in range(4)))
    await runner.shut_down()
    assert most[0] == 1
    assert sorted(worked) == [0, 0, 0, 4]
    assert len(recorder.deliveries) == 4


async def test_a_ring_wakes_one_idle_slot() -> None:
    slots = IdleSlots()
    woken: list[int] = []

    async def idle(number: int) -> None:
        await slots.wait(5)
        woken.append(number)

    waiting = [asyncio.create_task(idle(n)) for n in range(2)]
    await asyncio.sleep(0.05)
    slots.set()
    await asyncio.sleep(0.05)

    assert len(woken) == 1
    slots.set()
    await asyncio.gather(*waiting)
    assert sorted(woken) == [0, 1]


async def test_a_ring_while_every_slot_works_makes_the_next_look_at_once() -> None:
    slots = IdleSlots()
    slots.set()

    started = time.monotonic()
    await slots.wait(5)

    assert time.monotonic() - started < 1
    started = time.monotonic()
    await slots.wait(0.2)
    assert time.monotonic() - started >= 0.2


def test_each_row_gets_its_own_value_in_one_statement(
    conversation: Conversation,
) -> None:
    chats = more_conversations(conversation, 3)
    moments: dict[Any, datetime | None] = {
        chat.pk: timezone.now().replace(microsecond=n * 1000)
        for n, chat in enumerate(chats)
    }
    moments[chats[2].pk] = None

    Conversation.objects.filter(pk__in=list(moments)).update(
        last_inbound_at=value_per_row(Conversation, "last_inbound_at", moments)
    )

    stored = dict(Conversation.objects.values_list("pk", "last_inbound_at"))
    assert stored == moments


def test_failing_batch_hooks_stop_no_delivery(
    conversation: Conversation, recorder: Recorder, monkeypatch: Any, caplog: Any
) -> None:
    def broken(self: LoopbackAdapter, items: Any) -> None:
        raise RuntimeError("a hook's own failure")

    monkeypatch.setattr(LoopbackAdapter, "prepare", broken, raising=False)
    monkeypatch.setattr(LoopbackAdapter, "after_work", broken, raising=False)
    accept_inbound(conversation, text("opening hours"))

    with caplog.at_level("WARNING", logger="gateway.pipeline"):
        assert process_batch(new_worker_id())

    assert [d["content"]["text"] for d in recorder.deliveries] == ["9 to 17."]
    assert "prepare for 1 loopback item(s) failed (RuntimeError" in caplog.text
    assert "after_work for 1 loopback item(s) failed (RuntimeError" in caplog.text
    assert "a hook's own failure" not in caplog.text
