"""Importing and exporting bot files, and refusing bad ones whole."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from botcore.botfile import BotFileError, parse_bot_file
from storage.models import Bot, Membership

REPO = Path(__file__).resolve().parent.parent
SHOP: dict[str, Any] = {
    "slug": "shop",
    "name": "Shop assistant",
    "language": "en",
    "greeting": [
        {"text": "Hi! Ask me about opening hours.",
         "quick_replies": [{"title": "Opening hours", "goto": "hours"}]}
    ],
    "fallback": [{"text": "Sorry, I did not get that."}],
    "dialogues": [
        {"id": "hours", "samples": ["when are you open", "opening hours"],
         "replies": [{"text": "Monday to Friday, 9 to 17.",
                      "buttons": [{"title": "Where are you?", "goto": "address"},
                                  {"title": "Website",
                                   "url": "https://shop.example"}]}]},
        {"id": "address", "samples": ["where are you"],
         "replies": [{"text": "Main street 1.",
                      "image": "https://shop.example/map.png"}]},
    ],
    "web": {"allowed_origins": ["https://shop.example"]},
}


def run_import(tmp_path: Path, data: Any, *args: str) -> dict[str, Any]:
    path = tmp_path / "bot.json"
    path.write_text(json.dumps(data))
    out = io.StringIO()
    call_command("importbot", str(path), *args, stdout=out)
    return dict(json.loads(out.getvalue()))


def run_export(slug: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("exportbot", slug, stdout=out)
    return dict(json.loads(out.getvalue()))


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(SHOP)
    change(data)
    return data


@pytest.mark.django_db
def test_import_prints_slug_and_web_key(tmp_path: Path) -> None:
    summary = run_import(tmp_path, SHOP)
    bot = Bot.objects.get(slug="shop")
    assert summary["slug"] == "shop"
    assert summary["web_key"] == bot.web_key
    assert bot.allowed_origins == ["https://shop.example"]


@pytest.mark.django_db
def test_importing_the_export_changes_nothing(tmp_path: Path) -> None:
    run_import(tmp_path, SHOP)
    before = Bot.objects.get(slug="shop")
    exported = run_export("shop")
    assert exported == SHOP
    summary = run_import(tmp_path, exported)
    after = Bot.objects.get(slug="shop")
    assert summary["changed"] is False
    assert after.updated_at == before.updated_at
    assert after.web_key == before.web_key


@pytest.mark.django_db
def test_import_updates_the_bot_with_the_same_slug(tmp_path: Path) -> None:
    first = run_import(tmp_path, SHOP)
    second = run_import(tmp_path, broken(lambda d: d.update(name="Renamed")))
    assert second["changed"] is True
    assert second["web_key"] == first["web_key"]
    assert Bot.objects.get().name == "Renamed"


@pytest.mark.django_db
def test_owner_becomes_a_member_who_can_sign_in(tmp_path: Path) -> None:
    user = get_user_model().objects.create_user("olga", password="pw-123456789")
    run_import(tmp_path, SHOP, "--owner", "olga")
    user.refresh_from_db()
    assert user.is_staff
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner"
    assert membership.bot.slug == "shop"


@pytest.mark.django_db
def test_a_collaborator_named_owner_becomes_an_owner(tmp_path: Path) -> None:
    user = get_user_model().objects.create_user("olga", password="pw-123456789")
    run_import(tmp_path, SHOP)
    Membership.objects.create(
        user=user, bot=Bot.objects.get(), role=Membership.Role.COLLABORATOR
    )
    promoted = run_import(tmp_path, SHOP, "--owner", "olga")
    assert promoted["changed"] is True
    assert Membership.objects.get(user=user).role == "owner"


@pytest.mark.django_db
def test_unknown_owner_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run_import(tmp_path, SHOP, "--owner", "nobody")
    assert not Bot.objects.exists()


BAD_FILES = [
    (lambda d: d["dialogues"][0]["replies"][0]["buttons"][0].update(goto="nowhere"),
     "dialogues[0].replies[0].buttons[0].goto", "unknown dialogue 'nowhere'"),
    (lambda d: d["dialogues"][0]["replies"][0]["buttons"].extend(
        [{"title": "a", "goto": "hours"}, {"title": "b", "goto": "hours"}]),
     "dialogues[0].replies[0].buttons", "at most 3 buttons"),
    (lambda d: d["dialogues"][1]["replies"][0].update(image="http://x.example/a.png"),
     "dialogues[1].replies[0].image", "must be an https URL"),
    (lambda d: d["dialogues"][1].update(id="hours"),
     "dialogues[1].id", "duplicate dialogue id 'hours'"),
    (lambda d: d["greeting"][0]["quick_replies"].extend(
        [{"title": str(n), "goto": "hours"} for n in range(13)]),
     "greeting[0].quick_replies", "at most 13 quick replies"),
    (lambda d: d.pop("slug"), "slug", "must be a non-empty string"),
    (lambda d: d["web"].update(allowed_origins=["shop.example"]),
     "web.allowed_origins[0]", "scheme://host"),
    (lambda d: d["greeting"][0]["quick_replies"][0].update(goto="gone"),
     "greeting[0].quick_replies[0].goto", "unknown dialogue 'gone'"),
    (lambda d: d.update(colour="blue"), "colour", "unknown field"),
    (lambda d: d["dialogues"][0].update(sample=["typo"]),
     "dialogues[0].sample", "unknown field"),
    (lambda d: d["dialogues"][0]["replies"][0]["buttons"][0].update(payload="x"),
     "dialogues[0].replies[0].buttons[0].payload", "unknown field"),
    (lambda d: d["greeting"][0]["quick_replies"][0].update(image="x"),
     "greeting[0].quick_replies[0].image", "unknown field"),
    (lambda d: d["web"].update(origins=["https://a.example"]),
     "web.origins", "unknown field"),
    (lambda d: d["dialogues"][0]["replies"][0]["buttons"][1].update(
        url="javascript:alert(1)"),
     "dialogues[0].replies[0].buttons[1].url", "must be an https URL"),
    (lambda d: d["dialogues"].append("hours"), "dialogues[2]", "must be an object"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_FILES)
def test_bad_file_error_names_the_field(change: Any, field: str, message: str) -> None:
    with pytest.raises(BotFileError) as raised:
        parse_bot_file(broken(change))
    assert raised.value.field == field
    assert message in raised.value.message


@pytest.mark.django_db
@pytest.mark.parametrize(("change", "field", "message"), BAD_FILES)
def test_bad_file_imports_nothing(
    tmp_path: Path, change: Any, field: str, message: str
) -> None:
    run_import(tmp_path, SHOP)
    before = Bot.objects.get().bot_file()
    bad = broken(change)
    bad["name"] = "Half imported"
    with pytest.raises(CommandError, match=f"field {re.escape(field)}"):
        run_import(tmp_path, bad)
    assert Bot.objects.count() == 1
    assert Bot.objects.get().bot_file() == before


@pytest.mark.django_db
def test_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bot.json"
    path.write_text('{"slug": "shop",\n "name": }')
    with pytest.raises(CommandError, match="line 2"):
        call_command("importbot", str(path))


@pytest.mark.django_db
def test_export_of_a_bot_stored_broken_names_the_field(tmp_path: Path) -> None:
    run_import(tmp_path, SHOP)
    Bot.objects.update(dialogues=[{"id": "hours", "replies": "none"}])
    with pytest.raises(CommandError, match=r"field dialogues\[0\]\.replies"):
        run_export("shop")


@pytest.mark.django_db
def test_export_of_unknown_slug_fails() -> None:
    with pytest.raises(CommandError, match="no bot with slug 'ghost'"):
        run_export("ghost")


@pytest.mark.django_db
def test_demo_bot_file_imports(tmp_path: Path) -> None:
    data = json.loads((REPO / "bots" / "demo.json").read_text())
    summary = run_import(tmp_path, data)
    assert summary["slug"] == data["slug"]
