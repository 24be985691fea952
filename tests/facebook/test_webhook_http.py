"""The webhook's answers over HTTP, from a live Daphne process."""

from __future__ import annotations

import json
import time

import pytest
import requests

from storage.models import Contact, Message
from tests.conftest import wait_until
from tests.facebook.conftest import (
    APP_SECRET,
    PERSON_B,
    VERIFY_TOKEN,
    Gateway,
    fixture_bytes,
    post_body,
    post_fixture,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)


def nothing_stored() -> bool:
    return not Message.objects.exists() and not Contact.objects.exists()


def test_subscription_handshake(gateway: Gateway) -> None:
    url = f"{gateway.base}/webhooks/facebook"
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444"}

    answer = requests.get(url, params=good, timeout=5)
    wrong = requests.get(url, params={**good, "hub.verify_token": "guess"}, timeout=5)

    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["Content-Type"] == "text/plain"
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("challenge", [None, "", "9" * 257])
def test_a_handshake_without_a_usable_challenge_is_refused(
    gateway: Gateway, challenge: str | None
) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
    if challenge is not None:
        params["hub.challenge"] = challenge

    answer = requests.get(f"{gateway.base}/webhooks/facebook", params=params,
                          timeout=5)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("bad", {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
        ("missing", {}),
        ("legacy only, wrong", {"X-Hub-Signature": "sha1=" + "0" * 40}),
        ("other secret", {"X-Hub-Signature-256": sign(
            fixture_bytes("messages__text"), "another-secret")}),
        # The legacy header counts only when the sha256 one is absent.
        ("bad sha256, good sha1", {
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
            "X-Hub-Signature": sign(fixture_bytes("messages__text"),
                                    algorithm="sha1"),
        }),
    ],
)
def test_unsigned_deliveries_are_refused_and_nothing_is_stored(
    gateway: Gateway, case: str, headers: dict[str, str]
) -> None:
    answer = post_body(gateway.base, fixture_bytes("messages__text"), headers)

    assert answer.status_code == 401, case
    assert answer.json()["error"]["code"] == "bad_signature"
    assert nothing_stored()


def test_the_legacy_signature_alone_is_accepted(gateway: Gateway) -> None:
    body = fixture_bytes("messages__text")
    headers = {"X-Hub-Signature": sign(body, algorithm="sha1")}

    answer = post_body(gateway.base, body, headers)

    assert answer.status_code == 200
    assert Message.objects.count() == 1


def test_a_signed_body_that_is_not_json_is_a_bad_request(gateway: Gateway) -> None:
    body = b"entry=1&object=page"
    answer = requests.post(
        f"{gateway.base}/webhooks/facebook", data=body,
        headers={"X-Hub-Signature-256": sign(body)}, timeout=5,
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"code": "bad_request", "message": "malformed delivery: not JSON"}
    }
    assert nothing_stored()


@pytest.mark.parametrize(
    ("body", "logged"),
    [
        (b'[{"object": "page"}]',
         "skipped malformed delivery: (body): must be an object"),
        (b'{"object": "page", "entry": {"id": "1"}}',
         "skipped malformed delivery: entry: must be a list"),
    ],
)
def test_a_signed_body_of_the_wrong_shape_is_acknowledged_and_logged(
    gateway: Gateway, body: bytes, logged: str
) -> None:
    answer = post_body(gateway.base, body)

    assert answer.status_code == 200
    assert nothing_stored()
    wait_until(lambda: logged in gateway.output())


def test_malformed_parts_are_skipped_and_the_rest_is_stored(
    gateway: Gateway,
) -> None:
    batch = json.loads(fixture_bytes("messages__batch_non_ascii"))
    good = batch["entry"][1]
    del batch["entry"][0]["id"]
    del good["messaging"][1]["sender"]
    stamp = int(time.time() * 1000) - 1000
    for event in good["messaging"]:
        event["timestamp"] = stamp

    answer = post_body(gateway.base, json.dumps(batch).encode())

    assert answer.status_code == 200
    stored = Message.objects.values_list("content__text", flat=True)
    assert sorted(stored) == ["Grüße ☕ — 漢字?", "opening hours"]
    wait_until(lambda: "skipped malformed event: entry[1].messaging[1].sender"
               in gateway.output())
    output = gateway.output()
    assert "skipped malformed entry: entry[0].id: must be an id" in output
    assert PERSON_B not in output and "Hei på deg" not in output


def huge_body() -> bytes:
    padding = "x" * (5 * 1024 * 1024)
    return json.dumps({"object": "page", "entry": [], "padding": padding}).encode()


def test_a_huge_body_is_refused_before_parsing(gateway: Gateway) -> None:
    body = huge_body()

    answer = requests.post(
        f"{gateway.base}/webhooks/facebook", data=body,
        headers={"X-Hub-Signature-256": sign(body)}, timeout=10,
    )

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"


def test_a_huge_chunked_body_is_refused_too(gateway: Gateway) -> None:
    body = huge_body()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))

    answer = requests.post(
        f"{gateway.base}/webhooks/facebook", data=chunks,
        headers={"X-Hub-Signature-256": sign(body)}, timeout=10,
    )

    assert answer.status_code == 413
    assert "Content-Length" not in answer.request.headers


def test_without_an_app_secret_the_webhook_is_unavailable(
    start_gateway: object, connected_page: object
) -> None:
    gateway = start_gateway(FACEBOOK_APP_SECRET="")  # type: ignore[operator]

    answer = post_fixture(gateway.base, "messages__text")

    assert answer.status_code == 503
    assert nothing_stored()
    assert APP_SECRET not in gateway.output()
