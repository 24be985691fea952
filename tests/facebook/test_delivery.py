"""The adapter's sends: the 24-hour window, multi-part replies, profiles.

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

from adapters.facebook.channel import FacebookAdapter
from adapters.facebook.local_graph import PROFILE_MARKER, LocalGraph
from adapters.facebook.profiles import refresh_profile
from botcore.messages import Button, Reply
from gateway.pipeline.adapters import PermanentDeliveryError, TemporaryDeliveryError
from storage.models import Contact, Conversation, FacebookPage, Message
from tests.conftest import wait_until
from tests.facebook.conftest import PERSON_A

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

    assert first.value.retry_after == 120
    assert second.value.reason == "page rate limited"
    assert 100 < (second.value.retry_after or 0) <= 120
    assert len(local_graph.calls()) == 1


def test_a_new_contacts_profile_is_fetched_after_the_reply(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    adapter.deliver(queued(conversation, Reply("Hello")))

    contact = wait_until(
        lambda: Contact.objects.filter(profile_fetched_at__isnull=False).first()
    )
    assert contact.full_name == "Person 9401"
    assert contact.avatar_url == f"https://platform-lookaside.example/{PERSON_A}.jpg"
    send, profile = local_graph.calls()
    assert "message" in send.body
    assert profile.body == {"fields": "name,profile_pic"}


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


def test_a_reply_waits_for_an_indicator_already_on_its_way(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("slow", delay=0.5, applies_to="action")
    adapter.bot_is_working(conversation)
    wait_until(lambda: adapter.typing.sending)

    adapter.deliver(queued(conversation, Reply("Hello")))

    typing, send = local_graph.calls()[:2]
    assert "sender_action" in typing.body and "message" in send.body


def test_a_profile_that_cannot_be_fetched_leaves_the_contact_nameless(
    facebook_settings: Any, conversation: Conversation, local_graph: LocalGraph,
    adapter: FacebookAdapter,
) -> None:
    local_graph.add_fault("profile_unavailable", applies_to="profile")

    refresh_profile(adapter.graph, conversation.contact_id)  # type: ignore[arg-type]

    contact = Contact.objects.get()
    assert contact.full_name == "" and contact.avatar_url == ""
    assert contact.profile_fetched_at is not None


def test_an_old_profile_is_fetched_again(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    facebook_settings: Any,
) -> None:
    facebook_settings.FACEBOOK_PROFILE_MAX_AGE = 3600
    Contact.objects.update(full_name="Old name",
                           profile_fetched_at=timezone.now() - timedelta(hours=2))

    adapter.deliver(queued(conversation, Reply("Hello")))

    wait_until(lambda: Contact.objects.get().full_name == "Person 9401")
    assert PROFILE_MARKER not in str(Contact.objects.values().get())
