"""Pusher signatures: channel authorization and the signed HTTP API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from pusher.http import Request

from adapters.web.pusher.hub import stop_hub
from adapters.web.pusher.signing import (
    SignatureError,
    channel_auth,
    verify_channel_auth,
    verify_request,
)
from tests.conftest_pusher import api_client, call_api, receive_event, subscribed

# The worked examples of Pusher's documentation.
DOCS_KEY = "278d425bdf160c739803"
DOCS_SECRET = "7ad3773142a6692b25b8"
DOCS_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
DOCS_QUERY = (
    b"auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0"
    b"&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature="
    b"da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
)


@pytest.fixture(autouse=True)
async def stop_pusher_hub() -> AsyncIterator[None]:
    yield
    await stop_hub()


@pytest.fixture
def docs_credentials(settings: Any) -> None:
    settings.PUSHER_KEY = DOCS_KEY
    settings.PUSHER_SECRET = DOCS_SECRET


def test_channel_auth_matches_pusher_worked_example(docs_credentials: None) -> None:
    expected = (
        "278d425bdf160c739803:"
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    )
    assert channel_auth("1234.1234", "private-foobar") == expected
    assert verify_channel_auth("1234.1234", "private-foobar", expected)


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "",
        "278d425bdf160c739803:" + "0" * 64,
        "otherkey:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
        "278d425bdf160c739803:58DF8B0C36D6982B82C3ECF6B4662E34FE8C25BBA48F5369F135BF8",
    ],
)
def test_forged_channel_auth_is_refused(docs_credentials: None, auth: object) -> None:
    assert not verify_channel_auth("1234.1234", "private-foobar", auth)
    # The signature binds the socket and the channel.
    good = channel_auth("1234.1234", "private-foobar")
    assert not verify_channel_auth("1234.1235", "private-foobar", good)
    assert not verify_channel_auth("1234.1234", "private-foobaz", good)


def test_request_signature_matches_pusher_worked_example(
    docs_credentials: None,
) -> None:
    params = verify_request(
        "POST", "/apps/3/events", DOCS_QUERY, DOCS_BODY, now=1353088179
    )
    assert params["auth_key"] == DOCS_KEY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "GET"}, "Invalid signature"),
        ({"path": "/apps/4/events"}, "Invalid signature"),
        ({"query": DOCS_QUERY.replace(b"1353088179", b"1353088180")}, "Invalid"),
        ({"query": DOCS_QUERY.replace(b"278d425b", b"278d425c")}, "auth_key"),
        ({"query": DOCS_QUERY.replace(b"version=1.0", b"version=2.0")}, "version"),
        ({"query": DOCS_QUERY.split(b"&auth_signature")[0]}, "auth_signature"),
        ({"body": DOCS_BODY.replace(b"data", b"date")}, "body_md5"),
        ({"now": 1353088179 + 601}, "Timestamp expired"),
        ({"now": 1353088179 - 601}, "Timestamp expired"),
        ({"query": DOCS_QUERY + b"&auth_key=x"}, "Duplicate"),
    ],
)
def test_tampered_request_is_refused(
    docs_credentials: None, change: dict[str, object], message: str
) -> None:
    request: dict[str, object] = {
        "method": "POST",
        "path": "/apps/3/events",
        "query_string": DOCS_QUERY,
        "body": DOCS_BODY,
        "now": 1353088179,
    }
    if "query" in change:
        change = {"query_string": change["query"]}
    request.update(change)
    with pytest.raises(SignatureError) as refused:
        verify_request(**request)  # type: ignore[arg-type]
    assert message in refused.value.message
    assert refused.value.status in (400, 401)


def test_body_md5_is_required_with_a_body(docs_credentials: None) -> None:
    query = b"auth_key=278d425bdf160c739803&auth_timestamp=1&auth_version=1.0"
    with pytest.raises(SignatureError) as refused:
        verify_request("POST", "/apps/3/events", query + b"&auth_signature=x", b"{}")
    assert refused.value.status == 401


async def test_pusher_library_trigger_is_accepted_and_delivered() -> None:
    socket, _ = await subscribed("news")
    request = api_client().trigger.make_request(["news"], "headline", {"a": 1})

    assert await call_api(request) == (200, b"{}")
    assert await receive_event(socket) == {
        "event": "headline",
        "channel": "news",
        "data": '{"a": 1}',
    }
    await socket.disconnect()


async def test_escaped_query_values_are_accepted() -> None:
    """The library signs values unescaped; HTTP clients may escape them."""
    request = api_client().channels_info.make_request("news,x", [])
    escaped = request.signed_path.replace("news,x", "news%2Cx")

    status, _ = await call_api(request, escaped)

    assert status == 200


async def test_bad_signature_is_refused_with_401() -> None:
    request = api_client().trigger.make_request(["news"], "headline", "x")
    tampered = request.signed_path.replace("auth_signature=", "auth_signature=0")

    status, body = await call_api(request, tampered)

    assert (status, body) == (401, b"Invalid signature\n")


async def test_stale_timestamp_is_refused_with_401() -> None:
    with mock.patch("pusher.http.time.time", return_value=time.time() - 700):
        request = api_client().trigger.make_request(["news"], "headline", "x")

    status, body = await call_api(request)

    assert status == 401
    assert body.startswith(b"Timestamp expired")


async def test_body_not_matching_body_md5_is_refused_with_401() -> None:
    socket, _ = await subscribed("news")
    request = api_client().trigger.make_request(["news"], "headline", "x")
    request.body = request.body.replace(b'"x"', b'"y"')

    status, body = await call_api(request)

    assert (status, body) == (401, b"body_md5 does not match the body\n")
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_get_with_wrong_body_md5_is_refused() -> None:
    """The library sends body_md5 on GET too: the MD5 of an empty body."""
    request = api_client().channels_info.make_request(None, [])
    wrong = request.signed_path.replace("d41d8cd98f00b204e9800998ecf8427e", "0" * 32)

    status, _ = await call_api(request, wrong)

    assert status == 401


async def test_data_over_10_kb_is_refused_with_413() -> None:
    request = api_client().trigger.make_request(["news"], "big", "x" * 10241)

    status, body = await call_api(request)

    assert status == 413
    assert b"10 KB" in body


async def test_data_of_exactly_10_kb_is_accepted() -> None:
    request = api_client().trigger.make_request(["news"], "big", "x" * 10240)

    assert (await call_api(request))[0] == 200


async def test_batch_with_one_event_over_10_kb_is_refused_with_413() -> None:
    batch = [
        {"channel": "news", "name": "small", "data": "x"},
        {"channel": "news", "name": "big", "data": "x" * 10241},
    ]
    # already_encoded skips the library's own size check.
    request = api_client().trigger_batch.make_request(batch, True)

    assert (await call_api(request))[0] == 413


async def test_unknown_app_id_is_refused_with_404() -> None:
    client = api_client(app_id=str(int(settings.PUSHER_APP_ID) + 1))
    request = client.trigger.make_request(["news"], "headline", "x")

    assert (await call_api(request))[0] == 404


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"name": "e", "data": "x"}, 400),
        ({"name": "e", "channels": ["bad channel"], "data": "x"}, 400),
        ({"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "x"}, 400),
        ({"name": "pusher:error", "channels": ["news"], "data": "x"}, 400),
        ({"name": "e", "channels": ["news"], "data": "x", "socket_id": "1"}, 400),
    ],
)
async def test_invalid_events_are_refused_with_400(
    payload: dict[str, object], status: int
) -> None:
    path = f"/apps/{settings.PUSHER_APP_ID}/events"
    request = Request(api_client(), "POST", path, payload)

    assert (await call_api(request))[0] == status


async def test_events_are_refused_before_any_is_sent() -> None:
    socket, _ = await subscribed("news")
    batch = [
        {"channel": "news", "name": "first", "data": "x"},
        {"channel": "bad channel", "name": "second", "data": "x"},
    ]
    request = api_client().trigger_batch.make_request(batch, True)

    assert (await call_api(request))[0] == 400
    assert await socket.receive_nothing()
    await socket.disconnect()


async def test_channel_info_answers_as_pusher_does() -> None:
    socket, _ = await subscribed("private-room")
    client = api_client()
    info = client.channel_info.make_request("private-room", ["subscription_count"])
    listing = client.channels_info.make_request("private-", ["subscription_count"])
    user_count = client.channels_info.make_request("private-", ["user_count"])

    status, body = await call_api(info)
    assert (status, json.loads(body)) == (
        200,
        {"occupied": True, "subscription_count": 1},
    )
    status, body = await call_api(listing)
    assert json.loads(body) == {"channels": {"private-room": {"subscription_count": 1}}}
    assert (await call_api(user_count))[0] == 400
    await socket.disconnect()
