"""The Graph client against the local Graph API, over real HTTP."""

from __future__ import annotations

import pytest

from adapters.facebook.graph import Failure, GraphClient, GraphError
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

    assert answer["message_id"].startswith("m_")
    assert answer["recipient_id"] == PERSON_A
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
