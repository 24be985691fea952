"""Profiles: fetched once a worker is done with a conversation, kept minimal.

The adapter runs in this process and reaches the local Graph API over HTTP
with the production client; the refresh runs on the adapter's own thread.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from adapters.facebook.channel import FacebookAdapter
from adapters.facebook.local_graph import PROFILE_MARKER, LocalGraph
from adapters.facebook.pages import UNREADABLE_TOKEN
from adapters.facebook.profiles import refresh_profile
from botcore.messages import Reply
from gateway.pipeline.adapters import PermanentDeliveryError
from storage.models import Contact, Conversation, FacebookPage, Message
from tests.conftest import PYTHON, REPO, process_env, wait_until
from tests.facebook.conftest import OTHER_KEY, PERSON_A

pytestmark = pytest.mark.django_db(transaction=True)
AVATAR = f"https://platform-lookaside.example/{PERSON_A}.jpg"


@pytest.fixture
def adapter(facebook_settings: Any) -> FacebookAdapter:
    return FacebookAdapter()


@pytest.fixture
def conversation(connected_page: FacebookPage) -> Conversation:
    contact = Contact.objects.create(
        bot=connected_page.bot, page=connected_page, channel="facebook",
        external_id=PERSON_A,
    )
    return Conversation.objects.create(
        bot=connected_page.bot, channel="facebook", contact=contact,
        last_inbound_at=timezone.now(),
    )


def profile_calls(graph: LocalGraph) -> list[Any]:
    return [call for call in graph.calls() if call.method == "GET"]


def name_known(name: str = "Known name") -> None:
    Contact.objects.update(
        full_name=name, avatar_url=AVATAR,
        profile_fetched_at=timezone.now() - timedelta(days=30),
    )


def wait_for_refresh(adapter: FacebookAdapter, contact_pk: int) -> None:
    wait_until(lambda: contact_pk not in adapter.profiles.pending)


def test_a_new_contacts_profile_is_fetched_after_the_work(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    adapter.after_work([conversation])

    contact = wait_until(
        lambda: Contact.objects.filter(profile_fetched_at__isnull=False).first()
    )
    assert contact.full_name == "Person 9401"
    assert contact.avatar_url == AVATAR
    [call] = local_graph.calls()
    assert call.path == PERSON_A and call.body == {"fields": "name,profile_pic"}
    assert PROFILE_MARKER not in str(Contact.objects.values().get())


def test_a_reply_that_failed_still_leads_to_the_profile(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    Conversation.objects.update(last_inbound_at=timezone.now() - timedelta(days=2))
    message = Message.objects.create(
        conversation=conversation, channel="facebook", direction="out",
        author="bot", content=Reply("Late").as_dict(), state="queued",
    )

    with pytest.raises(PermanentDeliveryError, match="24-hour window"):
        adapter.deliver(message)
    adapter.after_work([conversation])

    wait_until(lambda: Contact.objects.get().full_name == "Person 9401")


def test_a_fresh_profile_is_not_fetched_again(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    Contact.objects.update(full_name="Known name", profile_fetched_at=timezone.now())

    adapter.after_work([conversation])
    time.sleep(0.5)

    assert profile_calls(local_graph) == []


def test_an_old_profile_is_fetched_again(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    facebook_settings: Any,
) -> None:
    facebook_settings.FACEBOOK_PROFILE_MAX_AGE = 3600
    Contact.objects.update(full_name="Old name",
                           profile_fetched_at=timezone.now() - timedelta(hours=2))

    adapter.after_work([conversation])

    wait_until(lambda: Contact.objects.get().full_name == "Person 9401")


@pytest.mark.parametrize("fault", ["profile_unavailable", "permission"])
def test_a_profile_meta_does_not_give_leaves_the_contact_nameless(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    fault: str,
) -> None:
    local_graph.add_fault(fault, applies_to="profile")

    refresh_profile(adapter.graph, conversation.contact_id)  # type: ignore[arg-type]

    contact = Contact.objects.get()
    assert contact.full_name == "" and contact.avatar_url == ""
    assert contact.profile_fetched_at is not None
    assert FacebookPage.objects.get().token_invalid_since is None


def test_a_refused_profile_keeps_the_name_already_known(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    name_known()
    local_graph.add_fault("profile_unavailable", applies_to="profile")

    refresh_profile(adapter.graph, conversation.contact_id)  # type: ignore[arg-type]

    contact = Contact.objects.get()
    assert (contact.full_name, contact.avatar_url) == ("Known name", AVATAR)
    fetched = contact.profile_fetched_at
    assert fetched is not None and timezone.now() - fetched < timedelta(minutes=1)


def test_an_expired_token_marks_the_page_and_keeps_the_name(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    name_known()
    local_graph.add_fault("token_expired", applies_to="profile")

    adapter.after_work([conversation])
    wait_until(lambda: FacebookPage.objects.get().token_invalid_since)
    wait_for_refresh(adapter, conversation.contact_id)  # type: ignore[arg-type]

    contact = Contact.objects.get()
    assert contact.full_name == "Known name" and contact.avatar_url == AVATAR
    assert "190" in FacebookPage.objects.get().token_error
    # With the page marked, nothing is asked of Graph any more.
    adapter.after_work([conversation])
    time.sleep(0.5)
    assert len(profile_calls(local_graph)) == 1


def test_a_rate_limited_profile_holds_the_page_and_stays_stale(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("rate_limit", applies_to="profile")

    refresh_profile(adapter.graph, conversation.contact_id)  # type: ignore[arg-type]

    assert Contact.objects.get().profile_fetched_at is None
    assert FacebookPage.objects.get().throttled_until is not None


def test_a_token_no_key_decrypts_marks_the_page_and_keeps_the_name(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    facebook_settings: Any,
) -> None:
    name_known()
    facebook_settings.FIELD_ENCRYPTION_KEYS = [OTHER_KEY]

    refresh_profile(adapter.graph, conversation.contact_id)  # type: ignore[arg-type]

    assert Contact.objects.get().full_name == "Known name"
    assert FacebookPage.objects.get().token_error == UNREADABLE_TOKEN
    assert local_graph.calls() == []


@pytest.mark.parametrize(("value", "seconds"), [(None, 7 * 24 * 3600),
                                                ("3600", 3600)])
def test_the_profile_age_comes_from_the_environment(
    value: str | None, seconds: int
) -> None:
    env = process_env({"DJANGO_SETTINGS_MODULE": "gateway.settings"})
    env.pop("FACEBOOK_PROFILE_MAX_AGE", None)
    if value is not None:
        env["FACEBOOK_PROFILE_MAX_AGE"] = value
    code = ("import django; django.setup(); from django.conf import settings; "
            "import json; print(json.dumps(settings.FACEBOOK_PROFILE_MAX_AGE))")

    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=True)

    assert json.loads(done.stdout) == seconds


def test_the_profiles_of_a_batch_are_chosen_in_one_query(
    adapter: FacebookAdapter, conversation: Conversation, local_graph: LocalGraph,
    django_assert_num_queries: Any,
) -> None:
    page = FacebookPage.objects.get()
    fresh = Conversation.objects.create(
        bot=page.bot, channel="facebook",
        contact=Contact.objects.create(
            bot=page.bot, page=page, channel="facebook", external_id="7300000000000001",
            full_name="Known name", profile_fetched_at=timezone.now(),
        ),
    )

    with django_assert_num_queries(1):
        adapter.after_work([conversation, fresh])

    wait_until(lambda: Contact.objects.filter(
        external_id=PERSON_A, full_name="Person 9401"
    ).exists())
    assert [call.path for call in profile_calls(local_graph)] == [PERSON_A]


def test_profiles_slow_to_come_are_fetched_side_by_side(
    adapter: FacebookAdapter, connected_page: FacebookPage, local_graph: LocalGraph
) -> None:
    chats = [
        Conversation.objects.create(
            bot=connected_page.bot, channel="facebook",
            contact=Contact.objects.create(
                bot=connected_page.bot, page=connected_page, channel="facebook",
                external_id=f"730000000000000{number}",
            ),
        )
        for number in range(4)
    ]
    for _ in chats:
        local_graph.add_fault("slow", delay=1.0, applies_to="profile")

    started = time.monotonic()
    adapter.after_work(chats)
    wait_until(lambda: not Contact.objects.filter(full_name="").exists())

    # One after the other, the four fetches would take four seconds.
    assert time.monotonic() - started < 2.5
