"""The adapter's sends: the 24-hour window, parts, rate limits, tokens.

The adapter runs in this process and reaches the local Graph API over HTTP
with the production client.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from adapters.facebook import channel
from adapters.facebook.channel import FacebookAdapter
from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.pages import MAX_THROTTLE_SECONDS, UNREADABLE_TOKEN
from adapters.facebook.typing import TypingIndicator
from botcore.messages import Button, Reply
from gateway.pipeline.adapters import PermanentDeliveryError, TemporaryDeliveryError
from storage.models import Contact, Conversation, FacebookPage, Message
from tests.conftest import wait_until
from tests.facebook.conftest import OTHER_KEY, PERSON_A

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def adapter(facebook_settings: Any) -> FacebookAdapter:
    return FacebookAdapter()


@pytest.fixture
def conversation(connected_page: FacebookPage) -> Conversation:
    contact = Contact.objects.create(
        bot=connected_page.bot, page=connected_page, channel="facebook",
        external_id=PERSON_A,
    )
    return Conversation.objects.create(
        bot=connected_page.bot, channel="facebook", contact=contact,
        last_inbound_at=timezone.now(),
    )


def queued(conversation: Conversation, reply: Reply, author: str = "bot") -> Message:
    return Message.objects.create(
        conversation=conversation, channel="facebook", direction="out",
        author=author, content=reply.as_dict(), state="queued",
    )


def age_conversation(conversation: Conversation, hours: float) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        last_inbound_at=timezone.now() - timedelta(hours=hours)
    )


def test_inside_the_window_a_reply_is_a_response(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    message_id = adapter.deliver(queued(conversation, Reply("Main street 1.")))

    [call] = local_graph.sent_messages()
    assert message_id is not None and message_id.startswith("m_")
    assert call.body == {
        "recipient": {"id": PERSON_A},
        "messaging_type": "RESPONSE",
        "message": {"text": "Main street 1.", "metadata": "bot-gateway"},
    }


def test_outside_the_window_the_bot_does_not_send(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    age_conversation(conversation, 25)

    with pytest.raises(PermanentDeliveryError, match="24-hour window"):
        adapter.deliver(queued(conversation, Reply("Late")))
    assert local_graph.calls() == []


def test_a_human_reply_outside_the_window_needs_the_tag(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    age_conversation(conversation, 30)
    message = queued(conversation, Reply("A person here"), author="human")

    with pytest.raises(PermanentDeliveryError, match="HUMAN_AGENT tag is off"):
        adapter.deliver(message)
    conversation.bot.human_agent_tag = True
    conversation.bot.save()
    adapter.deliver(message)

    [call] = local_graph.sent_messages()
    assert call.body["messaging_type"] == "MESSAGE_TAG"
    assert call.body["tag"] == "HUMAN_AGENT"


def test_a_multi_part_reply_resumes_after_the_part_that_failed(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    buttons = tuple(Button(f"Option {n}", payload=f"o{n}") for n in range(5))
    message = queued(conversation, Reply("Pick one", buttons=buttons))
    local_graph.add_fault("slow")  # the first part goes through
    local_graph.add_fault("unavailable")

    with pytest.raises(TemporaryDeliveryError):
        adapter.deliver(message)
    message.refresh_from_db()
    assert message.parts_delivered == 1
    adapter.deliver(message)

    sent = [c.body["message"]["attachment"]["payload"]["buttons"]
            for c in local_graph.sent_messages()]
    assert [[b["title"] for b in group] for group in sent] == [
        ["Option 0", "Option 1", "Option 2"], ["Option 3", "Option 4"],
    ]


def test_a_person_who_is_unavailable_fails_for_good(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("user_unavailable")

    with pytest.raises(PermanentDeliveryError, match=r"person not available .*551"):
        adapter.deliver(queued(conversation, Reply("Hello")))


def test_an_expired_token_is_logged_without_the_token(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    caplog: pytest.LogCaptureFixture,
) -> None:
    local_graph.add_fault("token_expired")

    with caplog.at_level(logging.WARNING, logger="gateway.facebook"), \
            pytest.raises(PermanentDeliveryError):
        adapter.deliver(queued(conversation, Reply("Hello")))

    page = FacebookPage.objects.get()
    assert [r.getMessage() for r in caplog.records] == [
        f"page {page.pk}: access token refused (page access token expired or "
        "invalid (Graph error 190/463)); reconnect the page"
    ]


def test_a_throttled_page_is_held_without_calling_graph(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("rate_limit", regain_minutes=2)

    with pytest.raises(TemporaryDeliveryError) as first:
        adapter.deliver(queued(conversation, Reply("One")))
    with pytest.raises(TemporaryDeliveryError) as second:
        adapter.deliver(queued(conversation, Reply("Two")))

    assert first.value.retry_after == 120 and first.value.throttled
    assert second.value.reason == "page rate limited" and second.value.throttled
    assert 100 < (second.value.retry_after or 0) <= 120
    assert len(local_graph.calls()) == 1


def end_the_hold(seconds_ago: float = 0.1) -> None:
    FacebookPage.objects.update(
        throttled_until=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_repeated_rate_limits_without_a_time_hold_longer_each_time(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    holds = []
    for _ in range(3):
        local_graph.add_fault("rate_limit")
        with pytest.raises(TemporaryDeliveryError) as raised:
            adapter.deliver(queued(conversation, Reply("Hello")))
        assert raised.value.throttled
        holds.append(raised.value.retry_after)
        end_the_hold()
    # Long after the last hold ended, a limit starts from the default.
    end_the_hold(seconds_ago=3600)
    local_graph.add_fault("rate_limit")
    with pytest.raises(TemporaryDeliveryError) as later:
        adapter.deliver(queued(conversation, Reply("Hello")))

    assert holds == [5.0, 10.0, 20.0]
    assert later.value.retry_after == 5.0


def test_escalation_stops_at_its_cap(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    FacebookPage.objects.update(throttle_seconds=MAX_THROTTLE_SECONDS * 0.75)
    end_the_hold()
    local_graph.add_fault("rate_limit")

    with pytest.raises(TemporaryDeliveryError) as raised:
        adapter.deliver(queued(conversation, Reply("Hello")))

    assert raised.value.retry_after == MAX_THROTTLE_SECONDS


def test_messengers_own_rate_limit_holds_the_page(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("messenger_rate_limit")

    with pytest.raises(TemporaryDeliveryError) as raised:
        adapter.deliver(queued(conversation, Reply("Hello")))

    assert raised.value.throttled and raised.value.retry_after == 5.0
    assert "80006" in raised.value.reason
    assert FacebookPage.objects.get().throttled_until is not None


def test_a_success_near_the_limit_holds_the_next_sends(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("high_usage", regain_minutes=2)

    assert adapter.deliver(queued(conversation, Reply("One")))
    with pytest.raises(TemporaryDeliveryError) as held:
        adapter.deliver(queued(conversation, Reply("Two")))

    assert held.value.reason == "page rate limited" and held.value.throttled
    assert 100 < (held.value.retry_after or 0) <= 120
    assert len(local_graph.sent_messages()) == 1


def test_a_token_no_key_decrypts_fails_for_good_and_marks_the_page(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    facebook_settings: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    facebook_settings.FIELD_ENCRYPTION_KEYS = [OTHER_KEY]

    with caplog.at_level(logging.INFO, logger="gateway.facebook"), \
            pytest.raises(PermanentDeliveryError) as first:
        adapter.deliver(queued(conversation, Reply("Hello")))
    with pytest.raises(PermanentDeliveryError) as second:
        adapter.deliver(queued(conversation, Reply("Again")))

    assert first.value.reason == UNREADABLE_TOKEN
    assert "reconnect the page" in second.value.reason
    page = FacebookPage.objects.get()
    assert page.token_invalid_since is not None
    assert page.token_error == UNREADABLE_TOKEN
    assert local_graph.calls() == []
    assert caplog.messages == [f"page {page.pk}: {UNREADABLE_TOKEN}"]


def test_typing_is_not_shown_through_a_token_no_key_decrypts(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    facebook_settings: Any,
) -> None:
    facebook_settings.FIELD_ENCRYPTION_KEYS = [OTHER_KEY]

    adapter.show_typing(conversation.pk)

    assert local_graph.calls() == []
    assert FacebookPage.objects.get().token_error == UNREADABLE_TOKEN


def test_a_slow_bot_shows_the_typing_indicator(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    adapter.bot_is_working(conversation)
    wait_until(lambda: local_graph.calls())

    adapter.deliver(queued(conversation, Reply("Hello")))

    typing, send = local_graph.calls()[:2]
    assert typing.body == {"recipient": {"id": PERSON_A}, "sender_action": "typing_on"}
    assert "message" in send.body


def test_a_quick_bot_sends_no_typing_indicator(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    adapter.bot_is_working(conversation)
    adapter.deliver(queued(conversation, Reply("Hello")))
    time.sleep(adapter.typing.delay + 0.3)

    assert not [call for call in local_graph.calls() if "sender_action" in call.body]


def test_the_typing_thread_idles_only_once_no_indicator_is_due() -> None:
    events: list[str] = []
    indicator = TypingIndicator(events.append, delay=0.05,
                                idle=lambda: events.append("idle"))
    indicator.start("a")
    indicator.start("b")
    wait_until(lambda: "idle" in events)
    indicator.start("c")
    wait_until(lambda: events.count("idle") == 2)

    assert events == ["a", "b", "idle", "c", "idle"]


def test_a_reply_waits_for_an_indicator_already_on_its_way(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("slow", delay=0.5, applies_to="action")
    adapter.bot_is_working(conversation)
    wait_until(lambda: adapter.typing.sending)

    adapter.deliver(queued(conversation, Reply("Hello")))

    typing, send = local_graph.calls()[:2]
    assert "sender_action" in typing.body and "message" in send.body


@pytest.mark.parametrize(
    ("status", "code", "effect"),
    [
        (500, 1200, "retried"),
        (400, 1200, "retried"),
        (400, 2, "retried"),
        (403, 4, "page held"),
        (403, 17, "page held"),
        (400, 32, "page held"),
        (400, 613, "page held"),
        (400, 80001, "page held"),
        (400, 80006, "page held"),
        (429, None, "page held"),
        (400, 190, "token marked invalid"),
        (403, 10, "failed"),
        (403, 200, "failed"),
        (400, 551, "failed"),
        (400, 100, "failed"),
    ],
)
def test_what_each_graph_error_does_to_the_message_and_the_page(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    status: int, code: int | None, effect: str,
) -> None:
    graph_error = None if code is None else {"code": code, "is_transient": False}
    local_graph.add_fault("graph_error", status=status, error=graph_error)

    with pytest.raises((TemporaryDeliveryError, PermanentDeliveryError)) as raised:
        adapter.deliver(queued(conversation, Reply("Hello")))

    page = FacebookPage.objects.get()
    failure = raised.value
    temporary = isinstance(failure, TemporaryDeliveryError)
    held = isinstance(failure, TemporaryDeliveryError) and failure.throttled
    outcome = {
        (True, False, False): "retried",
        (True, True, False): "page held",
        (False, False, True): "token marked invalid",
        (False, False, False): "failed",
    }[(temporary, held, page.token_invalid_since is not None)]
    assert outcome == effect
    assert (page.throttled_until is not None) == (effect == "page held")
    if isinstance(failure, PermanentDeliveryError) and page.token_invalid_since:
        assert page.token_error == failure.reason


def people(page: FacebookPage, count: int) -> list[Conversation]:
    """Conversations of as many people with the page, each just written."""
    return [
        Conversation.objects.create(
            bot=page.bot, channel="facebook", last_inbound_at=timezone.now(),
            contact=Contact.objects.create(
                bot=page.bot, page=page, channel="facebook",
                external_id=f"73000000000{number:05d}",
            ),
        )
        for number in range(count)
    ]


def test_a_round_reads_its_targets_in_one_query(
    adapter: FacebookAdapter, connected_page: FacebookPage, local_graph: LocalGraph,
    django_assert_num_queries: Any,
) -> None:
    messages = [queued(chat, Reply("Hello")) for chat in people(connected_page, 3)]

    with django_assert_num_queries(1):
        adapter.prepare(messages)
        for message in messages:
            adapter.deliver(message)

    assert len(local_graph.sent_messages()) == 3


def test_a_target_read_too_long_ago_is_read_again(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = queued(conversation, Reply("Late"))
    adapter.prepare([message])
    # Past the time a round takes, the person's last message was long ago.
    monkeypatch.setattr(channel, "TARGET_FRESH_FOR", 0.0)
    age_conversation(conversation, 25)

    with pytest.raises(PermanentDeliveryError, match="24-hour window"):
        adapter.deliver(message)
    assert local_graph.calls() == []
