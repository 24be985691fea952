"""Replies written in the admin by a person: who may, and how they go out."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from adapters.facebook.local_graph import LocalGraph
from botcore.messages import Inbound, Reply
from gateway.pipeline.inbound import accept_inbound
from gateway.pipeline.worker import (
    HELD_BACK,
    new_worker_id,
    process_one_conversation,
)
from storage.bots import import_bot
from storage.human_replies import MAX_HUMAN_REPLY_LENGTH
from storage.models import Bot, Contact, Conversation, FacebookPage, Membership, Message
from tests.conftest import wait_until
from tests.facebook.conftest import (
    BOT_FILE,
    PERSON_A,
    Gateway,
    post_fixture,
    sent_text,
)
from tests.web.conftest import call, start_session
from tests.web.test_channel import subscribe, websocket

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "a-long-test-password-42"
REPLY = "Hi, Ola from the shop here: your order left today."
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def user(username: str, *, superuser: bool = False) -> Any:
    users = get_user_model().objects
    if superuser:
        return users.create_superuser(username, password=PASSWORD)
    return users.create_user(username, password=PASSWORD, is_staff=True)


def member(username: str, bot: Bot, role: str) -> Any:
    person = user(username)
    Membership.objects.create(user=person, bot=bot, role=role)
    return person


def signed_in(username: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=username, password=PASSWORD)
    return client


def change_url(conversation: Conversation) -> str:
    return f"/admin/storage/conversation/{conversation.pk}/change/"


def reply_url(conversation: Conversation) -> str:
    return f"/admin/storage/conversation/{conversation.pk}/reply/"


def csrf_token(client: Client) -> str:
    """A CSRF token of the signed-in session, as the admin's forms carry."""
    found = CSRF.search(client.get("/admin/").content.decode())
    assert found is not None
    return found.group(1)


def send_reply(client: Client, conversation: Conversation, text: str) -> Any:
    return client.post(reply_url(conversation), {
        "csrfmiddlewaretoken": csrf_token(client), "text": text,
    })


@pytest.fixture
def messenger_chat(connected_page: FacebookPage) -> Conversation:
    contact = Contact.objects.create(
        bot=connected_page.bot, page=connected_page, channel="facebook",
        external_id=PERSON_A,
    )
    return Conversation.objects.create(
        bot=connected_page.bot, channel="facebook", contact=contact,
        last_inbound_at=timezone.now(),
    )


def test_members_see_the_reply_form_and_others_do_not(
    messenger_chat: Conversation,
) -> None:
    member("alice", messenger_chat.bot, Membership.Role.OWNER)
    other_bot = import_bot({**BOT_FILE, "slug": "cafe"})[0]
    member("bob", other_bot, Membership.Role.OWNER)

    page = signed_in("alice").get(change_url(messenger_chat)).content.decode()
    elsewhere = signed_in("bob").get(change_url(messenger_chat), follow=True)

    assert f'action="{reply_url(messenger_chat)}"' in page
    assert 'name="text"' in page
    assert f'maxlength="{MAX_HUMAN_REPLY_LENGTH}"' in page
    assert 'name="text"' not in elsewhere.content.decode()


@pytest.mark.parametrize(
    ("username", "role"),
    [("alice", Membership.Role.OWNER), ("carol", Membership.Role.COLLABORATOR),
     ("root", None)],
)
def test_owners_collaborators_and_superusers_queue_a_human_reply(
    messenger_chat: Conversation, username: str, role: str | None
) -> None:
    if role is None:
        user(username, superuser=True)
    else:
        member(username, messenger_chat.bot, role)
    client = signed_in(username)
    before = timezone.now()

    answer = send_reply(client, messenger_chat, f"  {REPLY}\n")

    assert answer.status_code == 302
    assert answer["Location"] == change_url(messenger_chat)
    reply = Message.objects.get(direction="out")
    assert (reply.author, reply.state, reply.channel) == ("human", "queued",
                                                          "facebook")
    assert reply.content == {"text": REPLY, "buttons": [], "quick_replies": [],
                             "image": None}
    assert reply.next_attempt_at is not None and reply.next_attempt_at >= before
    # The bot holds back, counted from the reply, as after an inbox reply.
    paused_until = Conversation.objects.get().bot_paused_until
    hold = timedelta(seconds=messenger_chat.bot.human_hold_seconds)
    assert paused_until is not None
    assert before + hold <= paused_until <= timezone.now() + hold
    shown = client.get(answer["Location"]).content.decode()
    assert "Your reply is queued for delivery" in shown


def test_a_reply_does_not_shorten_a_longer_hold(
    messenger_chat: Conversation,
) -> None:
    later = timezone.now() + timedelta(days=2)
    Conversation.objects.update(bot_paused_until=later)
    member("alice", messenger_chat.bot, Membership.Role.OWNER)

    send_reply(signed_in("alice"), messenger_chat, REPLY)

    assert Conversation.objects.get().bot_paused_until == later


def test_staff_who_are_not_members_of_the_bot_are_refused(
    messenger_chat: Conversation,
) -> None:
    user("dave")
    other_bot = import_bot({**BOT_FILE, "slug": "cafe"})[0]
    member("bob", other_bot, Membership.Role.OWNER)

    answers = [send_reply(signed_in(name), messenger_chat, REPLY)
               for name in ("dave", "bob")]

    assert [answer.status_code for answer in answers] == [403, 403]
    assert not Message.objects.exists()
    assert Conversation.objects.get().bot_paused_until is None


def test_a_reply_without_the_csrf_token_is_refused(
    messenger_chat: Conversation,
) -> None:
    member("alice", messenger_chat.bot, Membership.Role.OWNER)

    answer = signed_in("alice").post(reply_url(messenger_chat), {"text": REPLY})

    assert answer.status_code == 403
    assert not Message.objects.exists()


def test_a_reply_is_only_posted(messenger_chat: Conversation) -> None:
    member("alice", messenger_chat.bot, Membership.Role.OWNER)

    assert signed_in("alice").get(reply_url(messenger_chat)).status_code == 405


def test_signed_out_visitors_are_sent_to_the_login(
    messenger_chat: Conversation,
) -> None:
    answer = Client().post(reply_url(messenger_chat), {"text": REPLY})

    assert answer.status_code == 302
    assert answer["Location"].startswith("/admin/login/")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("", "The reply is empty: write something to send."),
        (" \n\t ", "The reply is empty: write something to send."),
        ("x" * (MAX_HUMAN_REPLY_LENGTH + 1),
         f"The reply is {MAX_HUMAN_REPLY_LENGTH + 1} characters long; one "
         f"reply holds at most {MAX_HUMAN_REPLY_LENGTH}."),
    ],
)
def test_an_empty_or_oversized_reply_is_refused_with_the_reason(
    messenger_chat: Conversation, text: str, refusal: str
) -> None:
    member("alice", messenger_chat.bot, Membership.Role.OWNER)
    client = signed_in("alice")

    answer = send_reply(client, messenger_chat, text)

    assert answer.status_code == 302
    assert refusal in client.get(answer["Location"]).content.decode()
    assert not Message.objects.exists()
    assert Conversation.objects.get().bot_paused_until is None


def test_the_longest_reply_is_accepted(messenger_chat: Conversation) -> None:
    member("alice", messenger_chat.bot, Membership.Role.OWNER)

    send_reply(signed_in("alice"), messenger_chat, "é" * MAX_HUMAN_REPLY_LENGTH)

    assert Message.objects.get().content["text"] == "é" * MAX_HUMAN_REPLY_LENGTH


def test_a_bot_reply_still_queued_on_messenger_gives_way_to_the_person(
    messenger_chat: Conversation, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    queued_by_bot = Message.objects.create(
        conversation=messenger_chat, channel="facebook", direction="out",
        author="bot", content=Reply("Queued earlier").as_dict(), state="queued",
        next_attempt_at=timezone.now() + timedelta(minutes=1),
    )
    member("alice", messenger_chat.bot, Membership.Role.OWNER)
    send_reply(signed_in("alice"), messenger_chat, REPLY)
    Message.objects.filter(pk=queued_by_bot.pk).update(next_attempt_at=timezone.now())

    assert process_one_conversation(new_worker_id())

    queued_by_bot.refresh_from_db()
    assert (queued_by_bot.state, queued_by_bot.last_error) == ("failed", HELD_BACK)
    human = Message.objects.get(author="human")
    assert human.state == "sent", human.last_error
    assert [sent_text(call.body) for call in local_graph.sent_messages()] == [REPLY]


async def test_a_web_chat_gets_the_reply_like_a_bot_reply_and_the_bot_holds_back(
) -> None:
    bot = await Bot.objects.acreate(slug="web", name="Web", allowed_origins=["*"],
                                    fallback=[{"text": "Sorry?"}])
    await sync_to_async(member)("alice", bot, Membership.Role.OWNER)
    session = await start_session(bot.web_key)
    communicator, socket_id = await websocket()
    await subscribe_to_chat(communicator, socket_id, session)
    chat = await Conversation.objects.aget()
    client = await sync_to_async(signed_in)("alice")

    await sync_to_async(send_reply)(client, chat, REPLY)
    await sync_to_async(work_once)()

    event = await communicator.receive_json_from(5)
    published = json.loads(event["data"])
    assert event["event"] == "message" and published["sender"] == "bot"
    assert published["text"] == REPLY
    reply = await Message.objects.aget(author="human")
    assert reply.state == "sent" and published["id"] == reply.pk
    # What the visitor writes next waits for the person, not the bot.
    await sync_to_async(accept_inbound)(chat, Inbound(kind="text", text="thanks"))
    await sync_to_async(work_once)()
    assert await Message.objects.filter(direction="in", state="held").aexists()
    assert await Message.objects.filter(direction="out").acount() == 1
    await communicator.disconnect()


async def subscribe_to_chat(
    communicator: Any, socket_id: str, session: dict[str, Any]
) -> None:
    answer = await call(
        "POST", "/api/web/v1/pusher/auth",
        f"socket_id={socket_id}&channel_name={session['channel']}".encode(),
        token=session["token"], content_type="application/x-www-form-urlencoded",
    )
    subscribed = await subscribe(communicator, session["channel"],
                                 answer.json()["auth"])
    assert subscribed["event"] == "pusher_internal:subscription_succeeded"


def work_once() -> None:
    """Run the pipeline's worker over the conversation that has work."""
    assert process_one_conversation(new_worker_id())


def admin_session(base: str, username: str) -> requests.Session:
    """Sign in to the admin of a running gateway, as a browser does."""
    session = requests.Session()
    login = f"{base}/admin/login/"
    form = session.get(login, timeout=10)
    token = CSRF.search(form.text)
    assert token is not None
    signed = session.post(login, timeout=10, data={
        "csrfmiddlewaretoken": token.group(1), "username": username,
        "password": PASSWORD, "next": "/admin/",
    })
    assert signed.url.endswith("/admin/"), "not signed in"
    return session


def reply_through_the_admin(base: str, conversation: Conversation) -> None:
    session = admin_session(base, "alice")
    page = session.get(f"{base}{change_url(conversation)}", timeout=10)
    token = CSRF.search(page.text)
    assert token is not None and 'name="text"' in page.text
    answer = session.post(f"{base}{reply_url(conversation)}", timeout=10, data={
        "csrfmiddlewaretoken": token.group(1), "text": REPLY,
    })
    assert answer.status_code == 200 and "Your reply is queued" in answer.text


@pytest.mark.parametrize("tag_enabled", [True, False])
def test_a_human_reply_after_the_window_goes_out_with_the_tag_if_enabled(
    gateway: Gateway, local_graph: LocalGraph, tag_enabled: bool
) -> None:
    Bot.objects.update(human_agent_tag=tag_enabled)
    member("alice", Bot.objects.get(), Membership.Role.OWNER)
    # The person wrote 30 hours ago; the bot could not answer then.
    post_fixture(gateway.base, "messages__text", sent_at=time.time() - 30 * 3600)
    wait_until(lambda: Message.objects.filter(author="bot", state="failed").exists())

    reply_through_the_admin(gateway.base, Conversation.objects.get())

    human = wait_until(lambda: Message.objects.filter(
        author="human", state__in=["sent", "failed"]).first())
    sent = local_graph.sent_messages()
    if tag_enabled:
        assert human.state == "sent" and human.platform_message_id.startswith("m_")
        [call] = sent
        assert call.body["messaging_type"] == "MESSAGE_TAG"
        assert call.body["tag"] == "HUMAN_AGENT"
        assert call.body["message"] == {"text": REPLY, "metadata": "bot-gateway"}
    else:
        assert human.state == "failed" and sent == []
        assert human.last_error == ("outside Messenger's 24-hour window and the "
                                    "bot's HUMAN_AGENT tag is off")
