"""The local Graph API refuses what the real Send API refuses."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from adapters.facebook.graph import appsecret_proof
from adapters.facebook.local_graph import LocalGraph
from adapters.facebook.messenger_format import messenger_messages
from botcore.messages import Button, QuickReply, Reply
from tests.facebook.conftest import APP_SECRET, PAGE_TOKEN, PERSON_A


def post(graph: LocalGraph, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{graph.base_url}/me/messages",
        params={"appsecret_proof": appsecret_proof(PAGE_TOKEN, APP_SECRET)},
        headers={"Authorization": f"Bearer {PAGE_TOKEN}"},
        json=body, timeout=5,
    )


def send(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"recipient": {"id": PERSON_A}, "messaging_type": "RESPONSE",
            "message": message, **fields}


def template(count: int, title: str = "Option") -> dict[str, Any]:
    buttons = [{"type": "postback", "title": title, "payload": str(n)}
               for n in range(count)]
    payload = {"template_type": "button", "text": "Pick", "buttons": buttons}
    return {"attachment": {"type": "template", "payload": payload}}


def chips(count: int, title: str = "Yes") -> dict[str, Any]:
    return {"text": "Well?", "quick_replies": [
        {"content_type": "text", "title": title, "payload": str(n)}
        for n in range(count)
    ]}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (send({"text": "x" * 2001}), "message[text] must be less than or equal"),
        # An emoji counts twice, as Messenger counts UTF-16 units.
        (send({"text": "😀" * 1001}), "message[text] must be less than or equal"),
        (send(template(4)), "[buttons] must have 1 to 3 elements"),
        (send(template(2, title="t" * 21)), "[buttons][0][title] must be 1 to 20"),
        (send(chips(14)), "message[quick_replies] must have at most 13"),
        (send(chips(2, title="q" * 21)), "[quick_replies][0][title] must be 1 to"),
        ({"recipient": {"id": PERSON_A}, "message": {"text": "Hi"}},
         "messaging_type must be one of"),
        (send({"text": "Hi"}, messaging_type="MESSAGE_TAG"),
         "tag is required for messaging_type MESSAGE_TAG"),
    ],
)
def test_a_send_beyond_the_limits_is_refused_as_graph_refuses_it(
    local_graph: LocalGraph, body: dict[str, Any], says: str
) -> None:
    answer = post(local_graph, body)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == 100 and error["type"] == "OAuthException"
    assert error["message"].startswith("(#100) ") and says in error["message"]
    assert error["fbtrace_id"]
    assert local_graph.sent_messages() == []


@pytest.mark.parametrize(
    "body",
    [
        send({"text": "x" * 2000}),
        send(template(3)),
        send(chips(13, title="q" * 20)),
        send({"text": "Hi"}, messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT"),
        {"recipient": {"id": PERSON_A}, "sender_action": "typing_on"},
    ],
)
def test_a_send_within_the_limits_is_accepted(
    local_graph: LocalGraph, body: dict[str, Any]
) -> None:
    assert post(local_graph, body).status_code == 200


def test_what_the_sender_makes_of_a_big_reply_is_accepted(
    local_graph: LocalGraph,
) -> None:
    reply = Reply(
        text=("A long answer 😀 " * 300).strip(),
        buttons=tuple(Button(f"A button with a long title {n}", payload=str(n))
                      for n in range(7)),
        quick_replies=tuple(QuickReply(f"A long chip title {n}", str(n))
                            for n in range(15)),
    )

    answers = [post(local_graph, send(part)) for part in messenger_messages(reply)]

    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert len(answers) >= 5


def test_an_unknown_fault_is_refused_with_a_reason(local_graph: LocalGraph) -> None:
    url = f"{local_graph.base_url.rsplit('/', 1)[0]}/__local/faults"

    unknown = requests.post(url, json={"kind": "meteor"}, timeout=5)
    bad_option = requests.post(url, json={"kind": "slow", "delay": "long"},
                               timeout=5)
    known = requests.post(url, json={"kind": "rate_limit", "regain_minutes": 1},
                          timeout=5)

    assert unknown.status_code == 400
    assert "unknown fault kind 'meteor'" in unknown.json()["error"]["message"]
    assert bad_option.status_code == 400
    assert "delay must be" in bad_option.json()["error"]["message"]
    assert known.status_code == 200
    assert post(local_graph, send({"text": "Hi"})).status_code == 400
    with pytest.raises(ValueError, match="unknown fault options: colour"):
        local_graph.add_fault("slow", colour="red")
