"""Conversations over Messenger through live gateway processes.

Each test runs Daphne (and, with Redis, a worker process) against the test
database, posts signed captured-style deliveries, and watches what reaches
the local Graph API: a real HTTP server reached through the same client
production uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.pages import UNREADABLE_TOKEN, connect_page
from storage.models import Bot, Contact, Conversation, FacebookPage, Message
from tests.conftest import GatewayProcess, wait_until
from tests.facebook.conftest import (
    ADDRESS,
    FALLBACK,
    FIXTURE_WATERMARKS,
    HOURS,
    OTHER_KEY,
    PAGE_ID,
    PAGE_TOKEN,
    PERSON_A,
    PERSON_B,
    Gateway,
    gateway_env,
    post_body,
    post_fixture,
    sent_text,
    shifted_fixture,
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
    hold = 4
    Bot.objects.update(human_hold_seconds=hold)
    post_fixture(gateway.base, "messages__text")
    wait_for_sends(local_graph, 1)

    assert post_fixture(gateway.base, "echo__human_inbox").status_code == 200
    human = Message.objects.get(author="human")
    assert human.state == "sent" and human.direction == "out"
    assert human.content["text"].startswith("Hei! Ola here")
    paused_until = Conversation.objects.get().bot_paused_until
    assert human.sent_at is not None
    assert paused_until == human.sent_at + timedelta(seconds=hold)

    post_fixture(gateway.base, "postback__button")
    wait_until(lambda: Message.objects.filter(state="held").exists())
    assert timezone.now() < paused_until
    time.sleep(max(0.0, (paused_until - timezone.now()).total_seconds()) + 0.2)
    post_fixture(gateway.base, "messages__quick_reply")
    wait_for_sends(local_graph, 2)

    assert texts_sent_to(local_graph, PERSON_A) == [HOURS, HOURS]
    held = Message.objects.get(state="held")
    assert held.content["payload"] == "address"


def test_a_reply_awaiting_a_retry_when_a_human_answers_is_not_sent(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("rate_limit")
    post_fixture(gateway.base, "messages__text")
    wait_until(lambda: local_graph.calls())

    post_fixture(gateway.base, "echo__human_inbox")
    wait_until(lambda: Message.objects.filter(author="bot", state="failed").exists())

    reply = Message.objects.get(author="bot")
    assert "the bot holds back" in reply.last_error
    assert local_graph.sent_messages() == []


def test_a_new_contact_gets_a_profile_even_when_the_bot_holds_back(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "echo__human_inbox")
    post_fixture(gateway.base, "messages__text")

    wait_until(lambda: Message.objects.filter(state="held").exists())
    wait_until(lambda: Contact.objects.get().full_name == "Person 9401")
    assert local_graph.sent_messages() == []


def test_a_message_older_than_a_day_is_not_answered_but_profiled(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    written = time.time() - 25 * 3600

    post_fixture(gateway.base, "messages__text", sent_at=written)

    failed = wait_until(lambda: Message.objects.filter(state="failed").first())
    assert "24-hour window" in failed.last_error
    last_inbound = Conversation.objects.get().last_inbound_at
    assert last_inbound is not None
    assert abs(last_inbound.timestamp() - int(written)) < 1
    wait_until(lambda: Contact.objects.get().full_name == "Person 9401")
    assert local_graph.sent_messages() == []


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
    # The wait the rate limit asked for is not a failed attempt.
    assert reply.state == "sent" and reply.attempts == 2
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


def post_together(bases: list[str], body: bytes) -> list[int]:
    """Post the same delivery to each base at the same moment."""
    statuses: list[int] = []
    ready = threading.Barrier(len(bases))

    def deliver(base: str) -> None:
        ready.wait()
        statuses.append(post_body(base, body).status_code)

    threads = [threading.Thread(target=deliver, args=(base,)) for base in bases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_the_same_mid_at_two_web_processes_at_once_gets_one_reply(
    start_web: Callable[..., tuple[GatewayProcess, str]],
    start_worker: Callable[..., GatewayProcess],
    connected_page: FacebookPage,
    local_graph: LocalGraph,
) -> None:
    env = gateway_env(local_graph)
    bases = [start_web(env)[1], start_web(env)[1]]
    if settings.REDIS_URL:
        start_worker(env)
    rounds = 4

    statuses = []
    for number in range(rounds):
        mid = f"LrT9{number:03d}x".encode()
        body = shifted_fixture("messages__text", {b"LrT0001x": mid})
        statuses += post_together(bases, body)
    wait_for_sends(local_graph, rounds)
    time.sleep(2)

    assert statuses == [200] * 2 * rounds
    assert Message.objects.filter(direction="in").count() == rounds
    assert texts_sent_to(local_graph, PERSON_A) == [HOURS] * rounds


SECOND_PAGE_ID = "230049118830112"
SECOND_PAGE_TOKEN = "EAAGsecondPageAccessTokenForTests9876543210fedcba"
SECOND_PERSON = "5520183349172264"


def test_each_page_of_a_bot_answers_through_its_own_token(
    gateway: Gateway, local_graph: LocalGraph, connected_page: FacebookPage
) -> None:
    connect_page(connected_page.bot, SECOND_PAGE_ID, SECOND_PAGE_TOKEN)
    local_graph.add_page(SECOND_PAGE_ID, SECOND_PAGE_TOKEN)
    to_second_page = {PAGE_ID.encode(): SECOND_PAGE_ID.encode(),
                      PERSON_A.encode(): SECOND_PERSON.encode(),
                      b"LrT0001x": b"LrT7001x"}

    post_fixture(gateway.base, "messages__text")
    post_fixture(gateway.base, "messages__text", replace=to_second_page)
    wait_for_sends(local_graph, 2)

    sent = {(call.page_id, call.body["recipient"]["id"], sent_text(call.body))
            for call in local_graph.sent_messages()}
    assert sent == {(PAGE_ID, PERSON_A, HOURS),
                    (SECOND_PAGE_ID, SECOND_PERSON, HOURS)}
    pages = dict(Contact.objects.values_list("external_id", "page__page_id"))
    assert pages == {PERSON_A: PAGE_ID, SECOND_PERSON: SECOND_PAGE_ID}
    assert Conversation.objects.filter(bot=connected_page.bot).count() == 2


def test_the_answer_comes_before_the_bot_even_when_graph_is_slow(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("slow", delay=3)

    started = time.monotonic()
    answer = post_fixture(gateway.base, "messages__text")
    took = time.monotonic() - started
    answered_at = time.time()

    assert answer.status_code == 200 and took < 1
    assert Message.objects.filter(direction="in").count() == 1
    assert local_graph.sent_messages() == []
    wait_for_sends(local_graph, 1)
    [reply] = local_graph.sent_messages()
    assert reply.received_at - answered_at > 2


def test_a_token_no_key_decrypts_fails_the_reply_and_marks_the_page(
    start_gateway: Callable[..., Gateway],
    connected_page: FacebookPage,
    local_graph: LocalGraph,
) -> None:
    gateway = start_gateway(FIELD_ENCRYPTION_KEYS=OTHER_KEY)

    post_fixture(gateway.base, "messages__text")

    failed = wait_until(lambda: Message.objects.filter(state="failed").first())
    assert failed.last_error == UNREADABLE_TOKEN
    page = FacebookPage.objects.get()
    assert page.token_invalid_since is not None
    assert page.token_error == UNREADABLE_TOKEN
    time.sleep(1)
    assert local_graph.calls() == []
    assert UNREADABLE_TOKEN in gateway.output()
    assert PAGE_TOKEN not in gateway.output()
