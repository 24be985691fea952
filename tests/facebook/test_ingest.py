"""Storing events: the 24-hour window starts when the person wrote."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from adapters.facebook.ingest import deliveries_committer, store_events
from adapters.facebook.webhook import Acknowledged, parse_payload
from storage.models import Conversation, FacebookPage, Message
from tests.facebook.conftest import PAGE_ID, shifted_fixture

pytestmark = pytest.mark.django_db(transaction=True)


def store(name: str, sent_at: float, replace: dict[bytes, bytes] | None = None) -> int:
    body = shifted_fixture(name, replace, sent_at)
    return store_events(parse_payload(json.loads(body)).events)


def last_inbound() -> datetime:
    moment = Conversation.objects.get().last_inbound_at
    assert moment is not None
    return moment


def test_the_window_starts_at_meta_s_timestamp(
    connected_page: FacebookPage,
) -> None:
    written = int(time.time()) - 3 * 3600

    store("messages__text", written)

    assert last_inbound() == datetime.fromtimestamp(written, tz=UTC)


def test_a_redelivery_does_not_move_the_window(
    connected_page: FacebookPage,
) -> None:
    store("messages__text", time.time() - 3 * 3600)
    first = last_inbound()

    # Meta delivers the same message again, stamped later.
    store("messages__text", time.time())

    assert last_inbound() == first
    assert Message.objects.count() == 1


def test_an_older_message_arriving_late_does_not_move_the_window_back(
    connected_page: FacebookPage,
) -> None:
    store("messages__text", time.time() - 60)
    newest = last_inbound()

    store("messages__text", time.time() - 3600, {b"LrT0001x": b"LrT0002x"})

    assert last_inbound() == newest
    assert Message.objects.count() == 2


def test_a_time_in_the_future_counts_as_now(connected_page: FacebookPage) -> None:
    store("messages__text", time.time() + 6 * 3600)

    assert last_inbound() <= timezone.now()
    assert timezone.now() - last_inbound() < timedelta(minutes=1)


def test_the_newest_message_of_a_batch_sets_the_window(
    connected_page: FacebookPage,
) -> None:
    written = int(time.time()) - 600

    store("messages__batch_non_ascii", written)

    moments = dict(
        Conversation.objects.values_list("contact__external_id", "last_inbound_at")
    )
    # The last event of each person in the fixture is at ms 6 and ms 5.
    stamp = datetime.fromtimestamp(written, tz=UTC)
    assert moments == {
        "7311290341929401": stamp + timedelta(milliseconds=6),
        "6972831045522190": stamp + timedelta(milliseconds=5),
    }


def test_deliveries_share_a_commit_while_they_hold_a_thousand_events() -> None:
    event = Acknowledged(PAGE_ID, "reaction")
    one, six_hundred = [event], [event] * 600

    assert deliveries_committer.batch_length([six_hundred, six_hundred]) == 1
    assert deliveries_committer.batch_length([six_hundred, [event] * 400]) == 2
    assert deliveries_committer.batch_length([one] * 80) == 50
    # A delivery of more than a thousand events still goes, alone.
    assert deliveries_committer.batch_length([[event] * 1001, one]) == 1


def test_a_text_with_a_nul_and_half_an_emoji_is_stored(
    connected_page: FacebookPage,
) -> None:
    escaped = {b'"when are you open"': b'"open\\u0000now \\ud83d?"'}

    assert store("messages__text", time.time(), escaped) == 1

    assert Message.objects.get().content["text"] == "open\ufffdnow \ufffd?"
