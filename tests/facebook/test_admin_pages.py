"""Pages in the admin: the token goes in sealed, the page id stays put."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.pages import page_access_token
from storage.models import Bot, FacebookPage, Membership
from tests.facebook.conftest import PAGE_ID, PAGE_TOKEN

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "a-long-test-password-42"
NEW_TOKEN = "EAAGrenewedPageAccessTokenForTests00000000000000"
ADD_URL = "/admin/storage/facebookpage/add/"


def admin_client(username: str = "root", *, superuser: bool = True) -> Client:
    users = get_user_model().objects
    if superuser:
        users.create_superuser(username, password=PASSWORD)
    else:
        users.create_user(username, password=PASSWORD, is_staff=True)
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=username, password=PASSWORD)
    return client


def submit(client: Client, url: str, fields: dict[str, Any]) -> Any:
    form = client.get(url)
    assert form.status_code == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.content)
    assert token is not None
    return client.post(url, {"csrfmiddlewaretoken": token.group(1).decode(),
                             **fields})


def change_url(page: FacebookPage) -> str:
    return f"/admin/storage/facebookpage/{page.pk}/change/"


def test_a_page_added_in_the_admin_stores_its_token_sealed(
    shop_bot: Bot, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    client = admin_client()
    form = client.get(ADD_URL)
    assert b'type="password" name="access_token"' in form.content

    answer = submit(client, ADD_URL, {"bot": shop_bot.pk, "page_id": PAGE_ID,
                                      "access_token": PAGE_TOKEN})

    assert answer.status_code == 302
    page = FacebookPage.objects.get()
    assert PAGE_TOKEN not in page.access_token_encrypted
    assert page_access_token(PAGE_ID, page.access_token_encrypted) == PAGE_TOKEN
    assert page.token_hint == "…" + PAGE_TOKEN[-4:]
    assert [call.path for call in local_graph.calls()] == [
        "me", f"{PAGE_ID}/subscribed_apps",
    ]
    shown = client.get(change_url(page)).content.decode()
    assert PAGE_TOKEN not in shown and page.access_token_encrypted not in shown


@pytest.mark.parametrize(
    ("token", "error"),
    [("", "A new page needs its token."),
     ("EAAGtokenOfAnotherPage", "the access token belongs to another page")],
)
def test_a_page_is_not_added_without_its_own_token(
    shop_bot: Bot, facebook_settings: Any, local_graph: LocalGraph,
    token: str, error: str,
) -> None:
    local_graph.add_page("555000111", "EAAGtokenOfAnotherPage")

    answer = submit(admin_client(), ADD_URL, {
        "bot": shop_bot.pk, "page_id": PAGE_ID, "access_token": token,
    })

    assert answer.status_code == 200
    assert error in answer.content.decode()
    assert not FacebookPage.objects.exists()


def test_the_page_id_cannot_change_and_a_new_token_replaces_the_old(
    connected_page: FacebookPage, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    local_graph.add_page(PAGE_ID, NEW_TOKEN)
    FacebookPage.objects.update(token_invalid_since=timezone.now(),
                                token_error="expired")
    client = admin_client()
    assert b'name="page_id"' not in client.get(change_url(connected_page)).content

    answer = submit(client, change_url(connected_page), {
        "bot": connected_page.bot_id, "page_id": "999", "access_token": NEW_TOKEN,
    })

    assert answer.status_code == 302
    page = FacebookPage.objects.get()
    assert page.page_id == PAGE_ID
    assert page_access_token(PAGE_ID, page.access_token_encrypted) == NEW_TOKEN
    assert page.token_invalid_since is None and page.token_error == ""


def test_an_empty_token_field_keeps_the_stored_token(
    connected_page: FacebookPage, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    sealed = connected_page.access_token_encrypted

    answer = submit(admin_client(), change_url(connected_page), {
        "bot": connected_page.bot_id, "access_token": "",
    })

    assert answer.status_code == 302
    assert FacebookPage.objects.get().access_token_encrypted == sealed
    assert local_graph.calls() == []


def test_owners_see_their_pages_but_do_not_add_or_change_them(
    connected_page: FacebookPage, facebook_settings: Any
) -> None:
    client = admin_client("alice", superuser=False)
    Membership.objects.create(user=get_user_model().objects.get(username="alice"),
                              bot=connected_page.bot)

    page = client.get(change_url(connected_page))

    assert page.status_code == 200
    assert b'name="access_token"' not in page.content
    assert client.get(ADD_URL).status_code == 403


def test_without_the_app_secret_a_page_is_added_unchecked_with_a_warning(
    shop_bot: Bot, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    facebook_settings.FACEBOOK_APP_SECRET = ""
    client = admin_client()

    answer = submit(client, ADD_URL, {"bot": shop_bot.pk, "page_id": PAGE_ID,
                                      "access_token": PAGE_TOKEN})

    assert answer.status_code == 302
    page = FacebookPage.objects.get()
    assert page_access_token(PAGE_ID, page.access_token_encrypted) == PAGE_TOKEN
    assert local_graph.calls() == []
    shown = client.get(answer["Location"]).content.decode()
    assert "the page&#x27;s token was NOT checked with the Graph API" in shown
    assert "The webhook answers 503 until the secret is set" in shown


def test_with_the_app_secret_a_token_graph_does_not_know_is_refused(
    shop_bot: Bot, facebook_settings: Any, local_graph: LocalGraph
) -> None:
    answer = submit(admin_client(), ADD_URL, {
        "bot": shop_bot.pk, "page_id": PAGE_ID,
        "access_token": "EAAGnotAPageTokenAtAll",
    })

    assert answer.status_code == 200
    assert "the Graph API refused the token" in answer.content.decode()
    assert not FacebookPage.objects.exists()
