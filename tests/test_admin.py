"""The admin site: each bot's history for its members only; owners set the
bot's Messenger options."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from botcore.messages import Inbound
from gateway.pipeline.inbound import accept_inbound
from storage.bots import export_bot, import_bot
from storage.models import Bot, Conversation, Membership

PASSWORD = "a-long-test-password-42"


def bot_file(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": f"Bot {slug}",
        "language": "en",
        "greeting": [{"text": "Hello"}],
        "fallback": [{"text": "Sorry"}],
        "dialogues": [],
    }


@pytest.fixture
def two_bots(db: None) -> dict[str, Any]:
    users = get_user_model().objects
    alice = users.create_user("alice", password=PASSWORD, is_staff=True)
    bob = users.create_user("bob", password=PASSWORD, is_staff=True)
    shop, _ = import_bot(bot_file("shop"), owner_username="alice")
    cafe, _ = import_bot(bot_file("cafe"), owner_username="bob")
    chats = {}
    for bot, words in ((shop, "shop secret"), (cafe, "cafe secret")):
        chat = Conversation.objects.create(bot=bot, channel="web")
        accept_inbound(chat, Inbound(kind="text", text=words))
        chats[bot.slug] = chat
    return {"alice": alice, "bob": bob, "chats": chats}


def signed_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_owner_sees_only_their_bot(two_bots: dict[str, Any]) -> None:
    page = signed_in("alice").get("/admin/storage/bot/")
    assert page.status_code == 200
    assert b"Bot shop" in page.content
    assert b"Bot cafe" not in page.content


def test_owner_reads_history_of_their_bot_only(two_bots: dict[str, Any]) -> None:
    client = signed_in("alice")
    shop, cafe = two_bots["chats"]["shop"], two_bots["chats"]["cafe"]
    own = client.get(f"/admin/storage/conversation/{shop.pk}/change/")
    assert own.status_code == 200
    assert b"shop secret" in own.content
    listing = client.get("/admin/storage/conversation/")
    assert str(shop.pk).encode() in listing.content
    assert str(cafe.pk).encode() not in listing.content
    other = client.get(f"/admin/storage/conversation/{cafe.pk}/change/")
    assert other.status_code == 302


def test_collaborator_reads_history_but_cannot_edit(
    two_bots: dict[str, Any],
) -> None:
    carol = get_user_model().objects.create_user(
        "carol", password=PASSWORD, is_staff=True
    )
    chat = two_bots["chats"]["shop"]
    Membership.objects.create(
        user=carol, bot=chat.bot, role=Membership.Role.COLLABORATOR
    )
    client = signed_in("carol")
    page = client.get(f"/admin/storage/conversation/{chat.pk}/change/")
    assert b"shop secret" in page.content
    answer = client.post(f"/admin/storage/bot/{chat.bot.pk}/change/", {"name": "x"})
    assert answer.status_code == 403


def test_staff_without_membership_sees_no_history(two_bots: dict[str, Any]) -> None:
    get_user_model().objects.create_user("dave", password=PASSWORD, is_staff=True)
    listing = signed_in("dave").get("/admin/storage/conversation/")
    assert b"secret" not in listing.content
    assert b"0 conversations" in listing.content


def test_admin_refuses_framing_and_forged_posts(two_bots: dict[str, Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    assert page["X-Frame-Options"] == "DENY"
    forged = client.post(
        "/admin/login/", {"username": "alice", "password": PASSWORD}
    )
    assert forged.status_code == 403


def test_passwords_are_hashed_with_pbkdf2_sha256(two_bots: dict[str, Any]) -> None:
    assert two_bots["alice"].password.startswith("pbkdf2_sha256$")


def csrf_signed_in(username: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=username, password=PASSWORD)
    return client


def form_token(content: bytes) -> str:
    found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', content)
    assert found is not None
    return found.group(1).decode()


def change_url(slug: str) -> str:
    return f"/admin/storage/bot/{Bot.objects.get(slug=slug).pk}/change/"


def test_an_owner_sets_the_messenger_options_and_nothing_else(
    two_bots: dict[str, Any],
) -> None:
    client = csrf_signed_in("alice")
    form = client.get(change_url("shop"))
    assert b'name="human_agent_tag"' in form.content
    assert b'name="human_hold_seconds"' in form.content
    assert b'name="name"' not in form.content

    answer = client.post(change_url("shop"), {
        "csrfmiddlewaretoken": form_token(form.content),
        "human_agent_tag": "on", "human_hold_seconds": "600",
        "name": "Renamed", "slug": "renamed",
    })

    assert answer.status_code == 302
    shop = Bot.objects.get(slug="shop")
    assert shop.human_agent_tag and shop.human_hold_seconds == 600
    assert shop.name == "Bot shop"


def test_an_owners_change_needs_the_csrf_token(two_bots: dict[str, Any]) -> None:
    answer = csrf_signed_in("alice").post(
        change_url("shop"), {"human_agent_tag": "on", "human_hold_seconds": "60"}
    )

    assert answer.status_code == 403
    assert not Bot.objects.get(slug="shop").human_agent_tag


def test_a_hold_longer_than_a_week_is_refused(two_bots: dict[str, Any]) -> None:
    client = csrf_signed_in("alice")
    form = client.get(change_url("shop"))

    answer = client.post(change_url("shop"), {
        "csrfmiddlewaretoken": form_token(form.content),
        "human_hold_seconds": str(8 * 24 * 3600),
    })

    assert answer.status_code == 200
    assert b"errorlist" in answer.content
    assert Bot.objects.get(slug="shop").human_hold_seconds == 1800


def test_collaborators_and_other_owners_cannot_set_the_options(
    two_bots: dict[str, Any],
) -> None:
    carol = get_user_model().objects.create_user(
        "carol", password=PASSWORD, is_staff=True
    )
    shop = Bot.objects.get(slug="shop")
    Membership.objects.create(user=carol, bot=shop, role=Membership.Role.COLLABORATOR)
    collaborator = signed_in("carol")
    options = {"human_agent_tag": "on", "human_hold_seconds": "60"}

    page = collaborator.get(change_url("shop"))
    refused = collaborator.post(change_url("shop"), options)
    elsewhere = signed_in("bob").post(change_url("shop"), options)

    assert page.status_code == 200
    assert b'name="human_agent_tag"' not in page.content
    assert refused.status_code == 403
    assert elsewhere.status_code == 403
    shop.refresh_from_db()
    assert not shop.human_agent_tag and shop.human_hold_seconds == 1800


def test_an_owner_cannot_change_the_members(two_bots: dict[str, Any]) -> None:
    page = signed_in("alice").get(change_url("shop"))

    assert b"memberships-TOTAL_FORMS" not in page.content


def superuser_edits(slug: str, **changes: Any) -> Any:
    """Post the bot's change form as a superuser, with some fields changed."""
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    client = csrf_signed_in("root")
    bot = Bot.objects.get(slug=slug)
    page = client.get(change_url(slug))
    fields = {
        "csrfmiddlewaretoken": form_token(page.content),
        "slug": bot.slug, "name": bot.name, "language": bot.language,
        "greeting": json.dumps(bot.greeting), "fallback": json.dumps(bot.fallback),
        "dialogues": json.dumps(bot.dialogues),
        "allowed_origins": json.dumps(bot.allowed_origins),
        "human_hold_seconds": str(bot.human_hold_seconds),
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    }
    fields.update({name: json.dumps(value) for name, value in changes.items()})
    return client.post(change_url(slug), fields)


HOURS = {"id": "hours", "samples": ["when are you open"],
         "replies": [{"text": "9 to 5"}]}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("dialogues", [{**HOURS, "replies": [{"text": "See", "buttons": [
        {"title": "Where?", "goto": "nowhere"}]}]}],
     "dialogues[0].replies[0].buttons[0].goto: unknown dialogue 'nowhere'"),
    ("greeting", [{"text": "Hi", "buttons": [
        {"title": "Go", "url": "javascript:alert(1)"}]}],
     "greeting[0].buttons[0].url: must be an https URL"),
    ("greeting", [{"text": "Hi", "quick_replies": [
        {"title": str(n), "goto": "hours"} for n in range(14)]}],
     "greeting[0].quick_replies: at most 13 quick replies"),
    ("fallback", [{"txt": "Sorry"}], "fallback[0].txt: unknown field"),
    ("fallback", None, "fallback: must be a list"),
    ("allowed_origins", ["shop.example"],
     'web.allowed_origins[0]: must be "*" or scheme://host[:port]'),
])
def test_a_superusers_edit_is_held_to_the_bot_file_rules(
    two_bots: dict[str, Any], field: str, value: Any, message: str
) -> None:
    shop = Bot.objects.get(slug="shop")
    shop.dialogues = [HOURS]
    shop.save()
    stored = Bot.objects.get(slug="shop").bot_file()

    answer = superuser_edits("shop", **{field: value})

    assert answer.status_code == 200
    assert answer.context["adminform"].form.errors == {field: [message]}
    assert message in html.unescape(answer.content.decode())
    assert Bot.objects.get(slug="shop").bot_file() == stored


def test_a_superusers_valid_edit_is_stored_as_importbot_would(
    two_bots: dict[str, Any],
) -> None:
    greeting = [{"text": "Welcome", "buttons": [], "quick_replies": [
        {"title": "Hours", "goto": "hours"}]}]

    answer = superuser_edits(
        "shop", greeting=greeting, dialogues=[HOURS],
        allowed_origins=["https://shop.example"],
    )

    assert answer.status_code == 302
    shop = Bot.objects.get(slug="shop")
    assert shop.greeting == [{"text": "Welcome", "quick_replies": [
        {"title": "Hours", "goto": "hours"}]}]
    assert shop.allowed_origins == ["https://shop.example"]
    assert export_bot(shop) == shop.bot_file()


def test_a_superuser_may_leave_a_bots_lists_empty(two_bots: dict[str, Any]) -> None:
    answer = superuser_edits("shop", dialogues=[], allowed_origins=[], fallback=[])

    assert answer.status_code == 302
    shop = Bot.objects.get(slug="shop")
    assert (shop.dialogues, shop.allowed_origins, shop.fallback) == ([], [], [])
