"""Conversations over Messenger through live gateway processes.

Each test runs Daphne (and, with Redis, a worker process) against the test
database, posts signed captured-style deliveries, and watches what reaches
the local Graph API: a real HTTP server reached through the same client
production uses.
"""

from __future__ import annotations

import threading
import time

import pytest

from adapters.facebook.local_graph import LocalGraph
from storage.models import Contact, Conversation, FacebookPage, Message
from tests.conftest import wait_until
from tests.facebook.conftest import (
    ADDRESS,
    FALLBACK,
    FIXTURE_WATERMARKS,
    HOURS,
    PAGE_ID,
    PERSON_A,
    PERSON_B,
    Gateway,
    post_fixture,
    sent_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


def texts_sent_to(graph: LocalGraph, psid: str) -> list[str]:
    return [
        sent_text(call.body)
        for call in graph.sent_messages()
        if call.body["recipient"]["id"] == psid
    ]


def wait_for_sends(graph: LocalGraph, count: int, timeout: float = 20) -> None:
    wait_until(lambda: len(graph.sent_messages()) >= count, timeout)


def test_a_text_is_answered_with_the_matching_dialogue(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    answer = post_fixture(gateway.base, "messages__text")

    assert answer.status_code == 200
    wait_for_sends(local_graph, 1)
    call = local_graph.sent_messages()[0]
    assert call.page_id == PAGE_ID
    assert call.body["messaging_type"] == "RESPONSE"
    assert call.body["message"]["metadata"] == "bot-gateway"
    template = call.body["message"]["attachment"]["payload"]
    assert template["text"] == HOURS
    assert [button["type"] for button in template["buttons"]] == [
        "postback", "web_url",
    ]
    # The bot answered at once: no typing indicator held the reply back.
    assert not [c for c in local_graph.calls() if "sender_action" in c.body]


def test_a_batch_of_entries_is_answered_in_order(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    answer = post_fixture(gateway.base, "messages__batch_non_ascii")

    assert answer.status_code == 200
    # Stored durably before the answer: all six, decoded from Meta's escapes.
    texts = list(
        Message.objects.filter(direction="in").order_by("id")
        .values_list("content__text", flat=True)
    )
    assert "Hei på deg 😀 blåbær" in texts
    assert "Grüße ☕ — 漢字?" in texts
    assert len(texts) == 6
    wait_for_sends(local_graph, 6)
    assert texts_sent_to(local_graph, PERSON_A) == [HOURS, ADDRESS, FALLBACK, HOURS]
    assert texts_sent_to(local_graph, PERSON_B) == [FALLBACK, HOURS]


def test_the_same_mid_twice_gets_one_reply(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    statuses: list[int] = []

    def deliver() -> None:
        statuses.append(post_fixture(gateway.base, "messages__text").status_code)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for_sends(local_graph, 1)
    # Meta gives up waiting and delivers again, long after the reply.
    assert post_fixture(gateway.base, "messages__text").status_code == 200
    time.sleep(2)

    assert statuses == [200, 200]
    assert Message.objects.filter(direction="in").count() == 1
    assert len(local_graph.sent_messages()) == 1


def test_quick_replies_and_postbacks_follow_their_payload(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "messages__quick_reply")
    wait_for_sends(local_graph, 1)
    post_fixture(gateway.base, "postback__button")
    wait_for_sends(local_graph, 2)
    post_fixture(gateway.base, "postback__get_started")
    wait_for_sends(local_graph, 3)

    sent = local_graph.sent_messages()
    assert [sent_text(call.body) for call in sent] == [
        HOURS, ADDRESS, "Hi! Ask me about opening hours.",
    ]
    chips = sent[2].body["message"]["quick_replies"]
    assert chips == [
        {"content_type": "text", "title": "Opening hours", "payload": "hours"}
    ]


def test_attachments_are_answered_without_text(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    assert post_fixture(gateway.base, "messages__attachments").status_code == 200

    wait_for_sends(local_graph, 8)
    assert texts_sent_to(local_graph, PERSON_A) == [FALLBACK] * 8
    kinds = [
        [item["kind"] for item in content["attachments"]]
        for content in Message.objects.filter(direction="in")
        .order_by("id").values_list("content", flat=True)
    ]
    assert kinds == [["image"], ["audio"], ["video"], ["file"], ["sticker"],
                     ["location"], ["fallback"], ["unsupported"]]
    location = Message.objects.get(platform_message_id__contains="0036")
    assert location.content["attachments"] == [{"kind": "location", "url": None}]


def test_the_pages_own_echo_is_not_answered(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "messages__text")
    wait_for_sends(local_graph, 1)

    assert post_fixture(gateway.base, "echo__own_send").status_code == 200
    time.sleep(2)

    assert len(local_graph.sent_messages()) == 1
    assert not Message.objects.filter(author="human").exists()
    assert Message.objects.filter(direction="in").count() == 1


def test_a_human_answering_in_the_page_inbox_holds_the_bot_back(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "messages__text")
    wait_for_sends(local_graph, 1)

    assert post_fixture(gateway.base, "echo__human_inbox").status_code == 200
    human = Message.objects.get(author="human")
    assert human.state == "sent" and human.direction == "out"
    assert human.content["text"].startswith("Hei! Ola here")
    conversation = Conversation.objects.get()
    assert conversation.bot_paused_until is not None

    # The echo's timestamp is from the fixture; hold from now on.
    Conversation.objects.update(bot_paused_until=conversation.bot_paused_until.replace(
        year=2100))
    post_fixture(gateway.base, "postback__button")
    wait_until(lambda: Message.objects.filter(state="held").exists())
    time.sleep(1)
    assert len(local_graph.sent_messages()) == 1


def test_delivery_and_read_watermarks_are_recorded(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "messages__text")
    wait_until(lambda: Message.objects.filter(direction="out", state="sent").exists())
    now = str(int(time.time() * 1000)).encode()

    post_fixture(gateway.base, "delivery__watermark",
                 replace={FIXTURE_WATERMARKS[0]: now})
    reply = Message.objects.get(direction="out")
    assert reply.delivered_at is not None and reply.read_at is None
    post_fixture(gateway.base, "read__watermark", replace={FIXTURE_WATERMARKS[1]: now})
    reply.refresh_from_db()
    assert reply.read_at is not None


def test_reactions_edits_standby_and_unknown_pages_are_acknowledged(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    for name in ("reaction__react", "message_edit__edit", "standby__other_app",
                 "messages__unknown_page", "object__instagram"):
        assert post_fixture(gateway.base, name).status_code == 200, name

    time.sleep(1)
    assert not Message.objects.exists()
    assert not Contact.objects.exists()
    assert local_graph.calls() == []
    assert "events for page 999000111222333, which no bot has" in gateway.output()


def test_graph_failures_are_retried_after_backoff_and_delivered_once(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("server_error")
    local_graph.add_fault("rate_limit")

    post_fixture(gateway.base, "messages__text")
    wait_for_sends(local_graph, 1, timeout=30)
    time.sleep(1)

    sends = [call for call in local_graph.calls() if "message" in call.body]
    assert [call.answered_status for call in sends] == [500, 400, 200]
    # Backoff, then the page's hold after the rate limit (5 s by default).
    assert sends[1].received_at - sends[0].received_at >= 0.15
    assert sends[2].received_at - sends[1].received_at >= 4.5
    reply = Message.objects.get(direction="out")
    assert reply.state == "sent" and reply.attempts == 3
    assert FacebookPage.objects.get().throttled_until is not None


def test_an_expired_token_marks_the_page_and_fails_without_retrying(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("token_expired")

    post_fixture(gateway.base, "messages__text")
    wait_until(lambda: Message.objects.filter(state="failed").exists())
    post_fixture(gateway.base, "postback__button")
    wait_until(lambda: Message.objects.filter(state="failed").count() == 2)
    time.sleep(1.5)

    page = FacebookPage.objects.get()
    assert page.token_invalid_since is not None
    assert "190" in page.token_error
    failed = Message.objects.filter(state="failed").order_by("id")
    assert "access token" in failed[0].last_error
    assert "reconnect the page" in failed[1].last_error
    sends = [call for call in local_graph.calls() if "message" in call.body]
    assert len(sends) == 1
    assert "access token refused" in gateway.output()
