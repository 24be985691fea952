"""`manage.py connectfacebook`: the token from the environment or stdin."""

from __future__ import annotations

import io
import json
import subprocess
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.pages import page_access_token
from storage.models import Bot, FacebookPage
from tests.conftest import PYTHON, REPO, process_env
from tests.facebook.conftest import APP_SECRET, PAGE_ID, PAGE_TOKEN

pytestmark = pytest.mark.django_db(transaction=True)


def connect(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("connectfacebook", *args, stdout=out)
    return dict(json.loads(out.getvalue()))


def test_the_token_comes_from_the_environment(
    shop_bot: Bot, facebook_settings: Any, monkeypatch: pytest.MonkeyPatch,
    local_graph: LocalGraph,
) -> None:
    monkeypatch.setenv("FACEBOOK_PAGE_ACCESS_TOKEN", PAGE_TOKEN)

    summary = connect("shop", "--page-id", PAGE_ID)

    assert summary == {"slug": "shop", "page_id": PAGE_ID,
                       "token_hint": "…" + PAGE_TOKEN[-4:], "created": True}
    page = FacebookPage.objects.get()
    assert PAGE_TOKEN not in page.access_token_encrypted
    assert page_access_token(page.page_id, page.access_token_encrypted) == PAGE_TOKEN
    paths = [call.path for call in local_graph.calls()]
    assert paths == ["me", f"{PAGE_ID}/subscribed_apps"]


def test_the_token_comes_from_stdin_in_a_real_process(
    shop_bot: Bot, local_graph: LocalGraph
) -> None:
    env = process_env({"FACEBOOK_APP_SECRET": APP_SECRET,
                       "FACEBOOK_GRAPH_URL": local_graph.base_url})
    env.pop("FACEBOOK_PAGE_ACCESS_TOKEN", None)

    done = subprocess.run(
        [PYTHON, "manage.py", "connectfacebook", "shop", "--page-id", PAGE_ID],
        input=PAGE_TOKEN + "\n", capture_output=True, text=True, cwd=REPO,
        env=env, timeout=60, check=False,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["page_id"] == PAGE_ID
    assert PAGE_TOKEN not in done.stdout + done.stderr
    assert FacebookPage.objects.filter(page_id=PAGE_ID).exists()


def test_there_is_no_way_to_pass_the_token_as_an_argument(shop_bot: Bot) -> None:
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("connectfacebook", "shop", "--page-id", PAGE_ID,
                     "--token", PAGE_TOKEN)


def test_a_token_of_another_page_is_refused(
    shop_bot: Bot, facebook_settings: Any, monkeypatch: pytest.MonkeyPatch,
    local_graph: LocalGraph,
) -> None:
    local_graph.add_page("555000111", "EAAGtokenOfAnotherPage")
    monkeypatch.setenv("FACEBOOK_PAGE_ACCESS_TOKEN", "EAAGtokenOfAnotherPage")

    with pytest.raises(CommandError, match="belongs to another page"):
        connect("shop", "--page-id", PAGE_ID)
    assert not FacebookPage.objects.exists()


def test_reconnecting_clears_a_refused_token(
    connected_page: FacebookPage, facebook_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FacebookPage.objects.update(token_invalid_since=timezone.now(),
                                token_error="expired")
    monkeypatch.setenv("FACEBOOK_PAGE_ACCESS_TOKEN", PAGE_TOKEN)

    assert connect("shop", "--page-id", PAGE_ID)["created"] is False
    page = FacebookPage.objects.get()
    assert page.token_invalid_since is None and page.token_error == ""


def test_an_unknown_bot_is_refused(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEBOOK_PAGE_ACCESS_TOKEN", PAGE_TOKEN)

    with pytest.raises(CommandError, match="no bot with slug 'nope'"):
        connect("nope", "--page-id", PAGE_ID, "--offline")


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", "connectfacebook", "shop", "--page-id", PAGE_ID,
         *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60,
        check=False,
    )


def test_without_the_app_secret_the_page_is_connected_unchecked(
    shop_bot: Bot, local_graph: LocalGraph
) -> None:
    env = process_env({"FACEBOOK_GRAPH_URL": local_graph.base_url,
                       "FACEBOOK_PAGE_ACCESS_TOKEN": PAGE_TOKEN})
    env.pop("FACEBOOK_APP_SECRET", None)

    done = run_command(env)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"slug": "shop", "page_id": PAGE_ID,
                                       "token_hint": "…" + PAGE_TOKEN[-4:],
                                       "created": True}
    assert "FACEBOOK_APP_SECRET is not set: the token was NOT checked" in done.stderr
    assert "webhook answers 503" in done.stderr
    assert PAGE_TOKEN not in done.stdout + done.stderr
    page = FacebookPage.objects.get()
    assert page_access_token(PAGE_ID, page.access_token_encrypted) == PAGE_TOKEN
    assert local_graph.calls() == []


def test_with_the_app_secret_a_token_graph_does_not_know_is_refused(
    shop_bot: Bot, local_graph: LocalGraph
) -> None:
    env = process_env({"FACEBOOK_APP_SECRET": APP_SECRET,
                       "FACEBOOK_GRAPH_URL": local_graph.base_url,
                       "FACEBOOK_PAGE_ACCESS_TOKEN": "EAAGnotAPageTokenAtAll"})

    done = run_command(env)

    assert done.returncode == 1
    assert ("the Graph API refused the token: page access token expired or "
            "invalid (Graph error 190)") in done.stderr
    assert "EAAGnotAPageTokenAtAll" not in done.stdout + done.stderr
    assert not FacebookPage.objects.exists()


def test_offline_stores_the_token_unchecked_and_says_so(
    shop_bot: Bot, facebook_settings: Any, monkeypatch: pytest.MonkeyPatch,
    local_graph: LocalGraph,
) -> None:
    monkeypatch.setenv("FACEBOOK_PAGE_ACCESS_TOKEN", "EAAGnotAPageTokenAtAll")
    out, err = io.StringIO(), io.StringIO()

    call_command("connectfacebook", "shop", "--page-id", PAGE_ID, "--offline",
                 stdout=out, stderr=err)

    assert json.loads(out.getvalue())["created"] is True
    assert err.getvalue().startswith("--offline: the token was NOT checked")
    assert local_graph.calls() == []
