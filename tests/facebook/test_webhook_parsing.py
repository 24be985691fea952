"""Reading deliveries: signatures, the validating step, the event table."""

from __future__ import annotations

import json
import logging

import pytest
from channels.testing import HttpCommunicator

from adapters.facebook.webhook import (
    ACKNOWLEDGED_EVENTS,
    HANDLED_EVENTS,
    Acknowledged,
    IncomingMessage,
    PageEcho,
    Receipt,
    SignatureError,
    parse_payload,
    verify_signature,
)
from gateway.asgi import application
from tests.facebook.conftest import APP_SECRET, PERSON_A, fixture_bytes, sign


def parse_fixture(name: str) -> list[object]:
    return list(parse_payload(json.loads(fixture_bytes(name))).events)


def test_the_signature_is_checked_over_the_raw_bytes() -> None:
    body = fixture_bytes("messages__batch_non_ascii")
    verify_signature(body, {"x-hub-signature-256": sign(body)}, APP_SECRET)

    # The same JSON, serialised again without Meta's escapes, is refused.
    again = json.dumps(json.loads(body), ensure_ascii=False).encode()
    with pytest.raises(SignatureError, match="sha256 signature mismatch"):
        verify_signature(again, {"x-hub-signature-256": sign(body)}, APP_SECRET)


def test_a_missing_signature_is_named() -> None:
    with pytest.raises(SignatureError, match="missing signature"):
        verify_signature(b"{}", {}, APP_SECRET)


@pytest.mark.parametrize(
    ("fixture", "kinds"),
    [
        ("messages__text", [IncomingMessage]),
        ("messages__batch_non_ascii", [IncomingMessage] * 6),
        ("echo__own_send", [PageEcho]),
        ("echo__human_inbox", [PageEcho]),
        ("delivery__watermark", [Receipt]),
        ("read__watermark", [Receipt]),
        ("reaction__react", [Acknowledged]),
        ("message_edit__edit", [Acknowledged]),
        ("standby__other_app", [Acknowledged]),
    ],
)
def test_each_fixture_reads_as_its_events(fixture: str, kinds: list[type]) -> None:
    assert [type(event) for event in parse_fixture(fixture)] == kinds


def test_echoes_of_own_sends_are_told_from_human_replies() -> None:
    [own] = parse_fixture("echo__own_send")
    [human] = parse_fixture("echo__human_inbox")

    assert isinstance(own, PageEcho) and own.own_send
    assert isinstance(human, PageEcho) and not human.own_send
    assert human.psid == PERSON_A


def test_texts_come_out_of_meta_escapes() -> None:
    events = parse_fixture("messages__batch_non_ascii")
    texts = [event.inbound.text for event in events]  # type: ignore[attr-defined]

    assert "Hei på deg 😀 blåbær" in texts


def test_postbacks_without_an_id_get_a_stable_one() -> None:
    [first] = parse_fixture("postback__get_started")
    [again] = parse_fixture("postback__get_started")

    assert isinstance(first, IncomingMessage)
    assert first.inbound.kind == "greeting"
    assert first.mid == again.mid  # type: ignore[attr-defined]


def test_an_unknown_object_yields_no_events() -> None:
    payload = parse_payload(json.loads(fixture_bytes("object__instagram")))

    assert payload.object == "instagram" and payload.events == ()


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        ([], "skipped malformed delivery: (body): must be an object"),
        ({"entry": []}, "skipped malformed delivery: object: must be a "
         "non-empty string"),
        ({"object": "page", "entry": {}}, "skipped malformed delivery: entry: "
         "must be a list"),
        ({"object": "page", "entry": [{"messaging": []}]}, "skipped malformed "
         "entry: entry[0].id: must be an id of at most 64 characters"),
        ({"object": "page", "entry": [{"id": "1", "messaging": {}}]}, "skipped "
         "malformed entry: entry[0].messaging: must be a list"),
    ],
)
def test_a_malformed_envelope_is_skipped_and_names_the_field(
    data: object, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.facebook"):
        payload = parse_payload(data)

    assert payload.events == () and payload.malformed == 1
    assert caplog.messages == [logged]


def test_a_malformed_entry_leaves_the_others() -> None:
    data = json.loads(fixture_bytes("messages__batch_non_ascii"))
    data["entry"].insert(1, "not an entry")

    payload = parse_payload(data)

    assert len(payload.events) == 6 and payload.malformed == 1


@pytest.mark.parametrize("stamp", [0, -5, 10**15, "1733300000000", 1.5])
def test_a_time_that_is_not_milliseconds_since_1970_is_malformed(
    stamp: object,
) -> None:
    data = json.loads(fixture_bytes("messages__text"))
    data["entry"][0]["messaging"][0]["timestamp"] = stamp

    payload = parse_payload(data)

    assert payload.events == () and payload.malformed == 1


def test_a_malformed_event_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = json.loads(fixture_bytes("messages__text"))
    broken = dict(data["entry"][0]["messaging"][0], timestamp="yesterday")
    data["entry"][0]["messaging"].append(broken)

    with caplog.at_level(logging.WARNING, logger="gateway.facebook"):
        payload = parse_payload(data)

    assert len(payload.events) == 1 and payload.malformed == 1
    assert caplog.messages == [
        "skipped malformed event: entry[0].messaging[1].timestamp: "
        "must be an integer (ms)"
    ]


def test_characters_no_database_stores_are_replaced_in_texts() -> None:
    # A NUL and half of an emoji's surrogate pair, as JSON escapes them.
    body = fixture_bytes("messages__text").replace(
        b'"when are you open"', b'"open\\u0000now \\ud83d?"'
    )

    [event] = parse_payload(json.loads(body)).events

    assert isinstance(event, IncomingMessage)
    assert event.inbound.text == "open\ufffdnow \ufffd?"


def test_an_id_no_database_stores_makes_its_event_malformed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = fixture_bytes("messages__text").replace(
        b'"7311290341929401"', b'"73112903\\ud83d41929401"'
    )

    with caplog.at_level(logging.WARNING, logger="gateway.facebook"):
        payload = parse_payload(json.loads(body))

    assert payload.events == () and payload.malformed == 1
    assert caplog.messages == [
        "skipped malformed event: entry[0].messaging[0].sender.id: must be "
        "an id without NUL or lone surrogates"
    ]


def test_the_event_tables_do_not_overlap() -> None:
    assert not set(HANDLED_EVENTS) & set(ACKNOWLEDGED_EVENTS)


@pytest.mark.django_db(transaction=True)
async def test_a_refused_delivery_is_logged_without_its_content(
    settings: object, caplog: pytest.LogCaptureFixture
) -> None:
    settings.FACEBOOK_APP_SECRET = APP_SECRET  # type: ignore[attr-defined]
    body = fixture_bytes("messages__text")
    communicator = HttpCommunicator(
        application, "POST", "/webhooks/facebook", body=body,
        headers=[(b"x-hub-signature-256", b"sha256=" + b"0" * 64)],
    )

    with caplog.at_level(logging.INFO, logger="gateway.facebook"):
        answer = await communicator.get_response()

    assert answer["status"] == 401
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.facebook"]
    assert logged == ["webhook delivery refused: sha256 signature mismatch"]
