"""After a chat, the gateway keeps and logs only what the contract allows."""

from __future__ import annotations

import pytest
from django.apps import apps

from adapters.facebook.local_graph import PROFILE_MARKER, LocalGraph
from storage.models import Contact
from tests.conftest import wait_until
from tests.facebook.conftest import (
    PAGE_TOKEN,
    PERSON_A,
    PERSON_B,
    Gateway,
    post_fixture,
)

pytestmark = pytest.mark.django_db(transaction=True)


def every_stored_value() -> str:
    """Every row of every table, as text."""
    rows: list[str] = []
    for model in apps.get_models():
        rows.extend(str(row) for row in model._default_manager.values())
    return "\n".join(rows)


def test_only_id_name_and_avatar_are_kept_about_a_person(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    post_fixture(gateway.base, "messages__batch_non_ascii")
    post_fixture(gateway.base, "echo__human_inbox")
    wait_until(lambda: Contact.objects.filter(full_name__startswith="Person")
               .count() == 2)

    stored = every_stored_value()
    assert PROFILE_MARKER not in stored
    for field in ("first_name", "last_name", "locale", "gender", "email"):
        assert field not in stored
    assert PAGE_TOKEN not in stored
    contact = Contact.objects.get(external_id=PERSON_A)
    assert contact.full_name == "Person 9401"
    assert contact.avatar_url.startswith("https://")
    profile_calls = [call for call in local_graph.calls() if call.method == "GET"]
    assert {call.body["fields"] for call in profile_calls} == {"name,profile_pic"}


def test_logs_carry_no_ids_names_texts_or_tokens(
    gateway: Gateway, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("server_error")
    post_fixture(gateway.base, "messages__batch_non_ascii")
    wait_until(lambda: len(local_graph.sent_messages()) >= 6, timeout=30)
    # A human answer after the bot's, which then holds back.
    post_fixture(gateway.base, "echo__human_inbox")
    post_fixture(gateway.base, "messages__unknown_page")
    wait_until(lambda: Contact.objects.filter(full_name__startswith="Person")
               .count() == 2)

    logs = gateway.output()
    assert "delivery of message" in logs  # the retry was logged
    for secret in (PERSON_A, PERSON_B, PAGE_TOKEN, "Person 9401", "Hei på deg",
                   "Ola here", "127.0.0.1"):
        assert secret not in logs, secret
