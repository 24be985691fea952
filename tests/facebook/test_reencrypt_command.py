"""`manage.py reencryptsecrets`: rotate FIELD_ENCRYPTION_KEYS safely."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from adapters.facebook.pages import UNREADABLE_TOKEN, connect_page, page_access_token
from storage.models import Bot, FacebookPage
from tests.conftest import PYTHON, REPO, process_env
from tests.facebook.conftest import PAGE_ID, PAGE_TOKEN

pytestmark = pytest.mark.django_db(transaction=True)
OLD_KEY = base64.urlsafe_b64encode(b"o" * 32).decode().rstrip("=")
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("=")
SECOND_PAGE = ("230049118830112", "EAAGsecondPageAccessTokenForTests9876543210")


def reencrypt() -> dict[str, int]:
    out = io.StringIO()
    call_command("reencryptsecrets", stdout=out)
    return dict(json.loads(out.getvalue())["page_tokens"])


def token_of(page_id: str) -> str:
    page = FacebookPage.objects.get(page_id=page_id)
    return page_access_token(page_id, page.access_token_encrypted)


@pytest.fixture
def pages_under_old_key(shop_bot: Bot, settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    connect_page(shop_bot, PAGE_ID, PAGE_TOKEN)
    connect_page(shop_bot, *SECOND_PAGE)


def test_rotating_the_keys_reseals_every_token_once(
    pages_under_old_key: None, settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    first = reencrypt()
    again = reencrypt()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]

    assert first == {"resealed": 2, "current": 0, "unreadable": 0, "restored": 0}
    assert again == {"resealed": 0, "current": 2, "unreadable": 0, "restored": 0}
    assert token_of(PAGE_ID) == PAGE_TOKEN
    assert token_of(SECOND_PAGE[0]) == SECOND_PAGE[1]


def test_a_token_no_key_opens_is_counted_and_fails_the_command(
    pages_under_old_key: None, settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]

    with pytest.raises(CommandError, match="2 page token"):
        call_command("reencryptsecrets", stdout=io.StringIO())
    assert FacebookPage.objects.filter(token_invalid_since__isnull=True).count() == 2


def test_a_page_marked_unreadable_is_restored_with_its_key_back(
    pages_under_old_key: None, settings: Any
) -> None:
    FacebookPage.objects.filter(page_id=PAGE_ID).update(
        token_error=UNREADABLE_TOKEN, token_invalid_since="2026-01-01T00:00:00Z"
    )
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    counts = reencrypt()

    assert counts["restored"] == 1
    page = FacebookPage.objects.get(page_id=PAGE_ID)
    assert page.token_invalid_since is None and page.token_error == ""


def test_the_command_prints_counts_and_never_a_token(
    pages_under_old_key: None,
) -> None:
    env = process_env({"FIELD_ENCRYPTION_KEYS": f"{NEW_KEY},{OLD_KEY}"})

    done = subprocess.run(
        [PYTHON, "manage.py", "reencryptsecrets"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )

    assert json.loads(done.stdout) == {"page_tokens": {
        "resealed": 2, "current": 0, "unreadable": 0, "restored": 0,
    }}
    for secret in (PAGE_TOKEN, SECOND_PAGE[1], NEW_KEY, OLD_KEY):
        assert secret not in done.stdout + done.stderr
    sealed = FacebookPage.objects.values_list("access_token_encrypted", flat=True)
    assert all(PAGE_TOKEN not in value for value in sealed)
