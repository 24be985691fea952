"""Replies become Messenger messages within Messenger's limits."""

from __future__ import annotations

from adapters.facebook.messenger_format import (
    messenger_messages,
    split_text,
    utf16_length,
)
from botcore.messages import Button, QuickReply, Reply


def test_a_plain_reply_is_one_text_message() -> None:
    assert messenger_messages(Reply("Main street 1.")) == [{"text": "Main street 1."}]


def test_long_text_is_split_on_word_boundaries() -> None:
    words = [f"word{n}" for n in range(700)]
    text = " ".join(words)

    chunks = split_text(text, 2000)

    assert len(chunks) == 3
    assert all(utf16_length(chunk) <= 2000 for chunk in chunks)
    assert " ".join(chunks).split(" ") == words


def test_emoji_count_twice_against_the_limit() -> None:
    chunks = split_text("😀" * 1500, 2000)

    assert [len(chunk) for chunk in chunks] == [1000, 500]


def test_a_word_longer_than_the_limit_is_cut() -> None:
    assert split_text("x" * 4500, 2000) == ["x" * 2000, "x" * 2000, "x" * 500]


def test_buttons_become_a_button_template() -> None:
    reply = Reply("Monday to Friday.", buttons=(
        Button("Where are you?", payload="address"),
        Button("Website", url="https://shop.example"),
    ))

    [message] = messenger_messages(reply)

    assert message["attachment"]["payload"] == {
        "template_type": "button",
        "text": "Monday to Friday.",
        "buttons": [
            {"type": "postback", "title": "Where are you?", "payload": "address"},
            {"type": "web_url", "url": "https://shop.example", "title": "Website"},
        ],
    }


def test_more_than_three_buttons_follow_in_another_template() -> None:
    buttons = tuple(Button(f"Option {n}", payload=f"o{n}") for n in range(5))

    messages = messenger_messages(Reply("Pick one", buttons=buttons))

    titles = [
        [button["title"] for button in message["attachment"]["payload"]["buttons"]]
        for message in messages
    ]
    assert titles == [["Option 0", "Option 1", "Option 2"], ["Option 3", "Option 4"]]
    assert messages[1]["attachment"]["payload"]["text"] == "…"


def test_a_long_text_with_buttons_keeps_the_template_text_short() -> None:
    text = " ".join(["word"] * 300)  # 1499 characters
    messages = messenger_messages(Reply(text, buttons=(Button("Go", payload="g"),)))

    template = messages[-1]["attachment"]["payload"]
    assert len(template["text"]) <= 640
    joined = " ".join([m["text"] for m in messages[:-1]] + [template["text"]])
    assert joined == text


def test_quick_replies_are_capped_cut_and_ride_on_the_last_message() -> None:
    chips = tuple(
        QuickReply(f"A rather long title number {n}", f"p{n}") for n in range(15)
    )
    reply = Reply("Choose", quick_replies=chips, image="https://shop.example/a.png")

    messages = messenger_messages(reply)

    assert messages[0] == {"text": "Choose"}
    assert messages[1]["attachment"] == {
        "type": "image",
        "payload": {"url": "https://shop.example/a.png", "is_reusable": True},
    }
    sent_chips = messages[1]["quick_replies"]
    assert len(sent_chips) == 13
    assert all(len(chip["title"]) <= 20 for chip in sent_chips)
    assert sent_chips[0] == {
        "content_type": "text", "title": "A rather long title…", "payload": "p0",
    }
