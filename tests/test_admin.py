"""The admin site shows each bot's history to its members only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from botcore.messages import Inbound
from gateway.pipeline.inbound import accept_inbound
from storage.bots import import_bot
from storage.models import Conversation, Membership

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
