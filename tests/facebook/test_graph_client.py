"""The Graph client against the local Graph API, over real HTTP."""

from __future__ import annotations

from typing import Any

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


def error(code: int | None, subcode: int | None = None, *,
          transient: bool | None = None) -> dict[str, Any]:
    """A Graph error object as Graph shapes it."""
    shaped: dict[str, Any] = {"message": f"(#{code}) from the local Graph",
                              "type": "OAuthException"}
    if code is not None:
        shaped["code"] = code
    if subcode is not None:
        shaped["error_subcode"] = subcode
    if transient is not None:
        shaped["is_transient"] = transient
    return shaped


RETRY, THROTTLED = Failure.RETRY, Failure.THROTTLED
TOKEN_INVALID, PERMANENT = Failure.TOKEN_INVALID, Failure.PERMANENT


@pytest.mark.parametrize(
    ("status", "graph_error", "failure", "reason"),
    [
        # Temporary: retried whatever the status and is_transient say.
        (500, error(1200, transient=True), RETRY,
         "temporary send error (Graph error 1200)"),
        (400, error(1200, transient=False), RETRY,
         "temporary send error (Graph error 1200)"),
        (503, error(2, transient=True), RETRY,
         "Graph service unavailable (Graph error 2)"),
        (400, error(2, transient=False), RETRY,
         "Graph service unavailable (Graph error 2)"),
        (400, error(9999, transient=True), RETRY,
         "temporary Graph error (Graph error 9999)"),
        (502, error(9999), RETRY, "Graph server error (Graph error 9999)"),
        # Rate limits: the page backs off.
        (403, error(4), THROTTLED, "app rate limit (Graph error 4)"),
        (403, error(17), THROTTLED, "user rate limit (Graph error 17)"),
        (400, error(32), THROTTLED, "page rate limit (Graph error 32)"),
        (400, error(613), THROTTLED, "rate limit (Graph error 613)"),
        (400, error(613, 2018022), THROTTLED, "rate limit (Graph error 613/2018022)"),
        (400, error(613, 1893016, transient=False), THROTTLED,
         "rate limit (Graph error 613/1893016)"),
        (400, error(80001), THROTTLED, "page rate limit (Graph error 80001)"),
        (400, error(80006), THROTTLED, "Messenger rate limit (Graph error 80006)"),
        (429, None, THROTTLED, "Graph API answered HTTP 429"),
        (429, error(1, transient=True), THROTTLED,
         "Graph API answered HTTP 429 (Graph error 1)"),
        (429, error(None), THROTTLED,
         "Graph API answered HTTP 429 (Graph error without a code)"),
        # The token: the page is marked, the owner reconnects it.
        (400, error(190), TOKEN_INVALID,
         "page access token expired or invalid (Graph error 190)"),
        (400, error(190, 463), TOKEN_INVALID,
         "page access token expired or invalid (Graph error 190/463)"),
        (401, error(190, 460), TOKEN_INVALID,
         "page access token expired or invalid (Graph error 190/460)"),
        # Permanent: the message fails with the reason.
        (403, error(10, 2018278), PERMANENT,
         "permission denied (Graph error 10/2018278)"),
        (403, error(200), PERMANENT, "permission missing (Graph error 200)"),
        (403, error(299), PERMANENT, "permission missing (Graph error 299)"),
        (400, error(551, 1545041), PERMANENT,
         "person not available (Graph error 551/1545041)"),
        (400, error(100), PERMANENT, "invalid parameter (Graph error 100)"),
        (500, error(100, transient=False), PERMANENT,
         "invalid parameter (Graph error 100)"),
        (400, error(9999), PERMANENT, "refused by Graph (Graph error 9999)"),
        (404, None, PERMANENT, "Graph API answered HTTP 404"),
    ],
)
def test_every_graph_error_is_classified_with_its_reason(
    client: GraphClient,
    local_graph: LocalGraph,
    status: int,
    graph_error: dict[str, Any] | None,
    failure: Failure,
    reason: str,
) -> None:
    local_graph.add_fault("graph_error", status=status, error=graph_error)

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert (raised.value.failure, raised.value.reason) == (failure, reason)
    [call] = local_graph.calls()
    assert call.answered_status == status


def test_a_graph_error_fault_takes_the_usage_headers_of_a_limit(
    client: GraphClient, local_graph: LocalGraph
) -> None:
    local_graph.add_fault("graph_error", status=400, error=error(32),
                          regain_minutes=4)

    with pytest.raises(GraphError) as raised:
        client.send(PAGE_TOKEN, MESSAGE)

    assert raised.value.failure is THROTTLED and raised.value.retry_after == 240


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        ({}, "a graph_error needs a status from 400 to 599"),
        ({"status": 200}, "a graph_error needs a status from 400 to 599"),
        ({"status": 400, "error": [1]}, "error must be Graph's error object"),
    ],
)
def test_a_graph_error_fault_is_checked(
    local_graph: LocalGraph, options: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        local_graph.add_fault("graph_error", **options)
    with pytest.raises(ValueError, match="unknown fault options: status"):
        local_graph.add_fault("server_error", status=500)


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


def test_the_proxy_of_the_environment_is_read_once(
    local_graph: LocalGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests reads the environment on every call unless told not to."""
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = local_graph.base_url.removesuffix("/v25.0")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    # Only the proxy can reach the Graph API here: the local one plays it.
    client = GraphClient("http://graph.invalid/v25.0", APP_SECRET, timeout=(1, 1))

    first = client.send(PAGE_TOKEN, MESSAGE)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    second = client.send(PAGE_TOKEN, MESSAGE)

    assert first.data["recipient_id"] == second.data["recipient_id"] == PERSON_A
    assert len(local_graph.calls()) == 2
