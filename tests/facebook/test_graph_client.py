"""The Graph client against the local Graph API, over real HTTP."""

from __future__ import annotations

import pytest

from adapters.facebook.graph import Failure, GraphClient, GraphError, read_usage
from adapters.facebook.local_graph import LocalGraph
from tests.facebook.conftest import APP_SECRET, PAGE_ID, PAGE_TOKEN, PERSON_A

MESSAGE = {"recipient": {"id": PERSON_A}, "messaging_type": "RESPONSE",
           "message": {"text": "hello"}}


@pytest.fixture
def client(local_graph: LocalGraph) -> GraphClient:
    return GraphClient(local_graph.base_url, APP_SECRET, timeout=(1, 1))


def test_a_send_returns_a_message_id(
    client: GraphClient, local_graph: LocalGraph
) -> None:
    answer = client.send(PAGE_TOKEN, MESSAGE)

    assert answer.data["message_id"].startswith("m_")
    assert answer.data["recipient_id"] == PERSON_A
    assert answer.hold_seconds is None
    [call] = local_graph.calls()
    assert call.page_id == PAGE_ID and call.body == MESSAGE


@pytest.mark.parametrize(
    ("fault", "failure", "code"),
    [
        ("server_error", Failure.RETRY, None),
        ("unavailable", Failure.RETRY, 2),
        ("temporary", Failure.RETRY, 1200),
        ("rate_limit", Failure.THROTTLED, 613),
        ("app_rate_limit", Failure.THROTTLED, 4),
        ("messenger_rate_limit", Failure.THROTTLED, 80006),
        ("token_expired", Failure.TOKEN_INVALID, 190),
        ("user_unavailable", Failure.PERMANENT, 551),
        ("permission", Failure.PERMANENT, 200),
        ("bad_parameter", Failure.PERMANENT, 100),
    ],
)
def test_graph_errors_are_classified(
    client: GraphClient,
    local_graph: LocalGraph,
    fault: str,
    failure: Failure,
    code: int | None,
) -> None:
    local_graph.add_fault(fault)

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.failure is failure
    assert raised.value.code == code


def test_a_rate_limit_honours_the_usage_headers(
    client: GraphClient, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("rate_limit", regain_minutes=3)

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.retry_after == 180


def test_a_rate_limit_without_a_time_leaves_the_wait_to_the_caller(
    client: GraphClient, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("rate_limit")

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.failure is Failure.THROTTLED
    assert raised.value.retry_after is None


@pytest.mark.parametrize(("regain_minutes", "hold"), [(2, 120), (0, 30)])
def test_a_success_near_the_limit_asks_to_hold_the_page(
    client: GraphClient, local_graph: LocalGraph, regain_minutes: int, hold: float
) -> None:
    local_graph.add_fault("high_usage", regain_minutes=regain_minutes)

    answer = client.send(PAGE_TOKEN, MESSAGE)

    assert answer.data["message_id"].startswith("m_")
    assert answer.hold_seconds == hold


@pytest.mark.parametrize(
    ("headers", "hold"),
    [
        ({"x-app-usage": '{"call_count": 95, "total_time": 1}'}, 30),
        ({"x-page-usage": '{"call_count": 5, "total_cputime": 97}'}, 30),
        ({"x-page-usage": '{"call_count": 94, "total_time": 94.9}'}, None),
        ({"x-business-use-case-usage": '{"1": [{"type": "messenger", '
          '"call_count": 10, "estimated_time_to_regain_access": 5}]}'}, 300),
        ({"x-app-usage": "not json", "x-page-usage": "[1, 2]"}, None),
        ({}, None),
    ],
)
def test_usage_headers_are_read_whichever_carries_them(
    headers: dict[str, str], hold: float | None
) -> None:
    assert read_usage(headers).hold_seconds() == hold


def test_a_slow_answer_is_a_temporary_failure(
    client: GraphClient, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("slow", delay=1.5)

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.failure is Failure.RETRY
    assert raised.value.reason == "Graph API unreachable (ReadTimeout)"


def test_a_wrong_app_secret_fails_the_proof(local_graph: LocalGraph) -> None:
    client = GraphClient(local_graph.base_url, "not-the-app-secret")

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.failure is Failure.PERMANENT and raised.value.code == 100
    assert local_graph.calls() == []


def test_an_unknown_token_is_refused(client: GraphClient) -> None:
    with pytest.raises(GraphError) as raised:
        client.page_of_token("EAAGsomeoneElsesToken")

    assert raised.value.failure is Failure.TOKEN_INVALID
    assert "EAAG" not in raised.value.reason
