"""Turn the gateway's replies into Messenger messages, within its limits.

One reply may become several messages: text longer than Messenger allows is
split on word boundaries, buttons beyond the three a template holds follow
in further templates, an image goes as an attachment. Quick replies ride on
the last message, as Messenger shows them only there.
"""

from __future__ import annotations

import logging
from typing import Any

from botcore.messages import Button, QuickReply, Reply

MAX_TEXT = 2000
MAX_TEMPLATE_TEXT = 640
MAX_BUTTONS = 3
MAX_QUICK_REPLIES = 13
MAX_TITLE = 20
MAX_PAYLOAD = 1000
# Text of the templates that carry the buttons beyond the first three; it
# must not be empty, and a symbol needs no translation.
MORE_BUTTONS_TEXT = "…"

logger = logging.getLogger("gateway.facebook")


def messenger_messages(reply: Reply) -> list[dict[str, Any]]:
    """Return the Messenger `message` objects that carry one reply."""
    messages = text_messages(reply.text, reply.buttons)
    if reply.image:
        messages.append(image_message(reply.image))
    if reply.quick_replies:
        chips = quick_replies(reply.quick_replies)
        if not messages:
            # Messenger shows quick replies only under a message.
            messages.append({"text": MORE_BUTTONS_TEXT})
        messages[-1]["quick_replies"] = chips
    return messages


def text_messages(text: str, buttons: tuple[Button, ...]) -> list[dict[str, Any]]:
    if not buttons:
        return [{"text": chunk} for chunk in split_text(text, MAX_TEXT)]
    chunks = split_text(text, MAX_TEXT) or [MORE_BUTTONS_TEXT]
    if utf16_length(chunks[-1]) > MAX_TEMPLATE_TEXT:
        chunks[-1:] = split_text(chunks[-1], MAX_TEMPLATE_TEXT)
    messages: list[dict[str, Any]] = [{"text": chunk} for chunk in chunks[:-1]]
    groups = [buttons[i:i + MAX_BUTTONS] for i in range(0, len(buttons), MAX_BUTTONS)]
    messages.append(button_template(chunks[-1], groups[0]))
    messages.extend(button_template(MORE_BUTTONS_TEXT, group) for group in groups[1:])
    return messages


def button_template(text: str, buttons: tuple[Button, ...]) -> dict[str, Any]:
    return {
        "attachment": {
            "type": "template",
            "payload": {
                "template_type": "button",
                "text": text,
                "buttons": [template_button(button) for button in buttons],
            },
        }
    }


def template_button(button: Button) -> dict[str, str]:
    title = cut(button.title, MAX_TITLE)
    if button.url is not None:
        return {"type": "web_url", "url": button.url, "title": title}
    return {
        "type": "postback",
        "title": title,
        "payload": (button.payload or "")[:MAX_PAYLOAD],
    }


def image_message(url: str) -> dict[str, Any]:
    return {
        "attachment": {
            "type": "image",
            "payload": {"url": url, "is_reusable": True},
        }
    }


def quick_replies(chips: tuple[QuickReply, ...]) -> list[dict[str, str]]:
    if len(chips) > MAX_QUICK_REPLIES:
        logger.warning(
            "reply has %d quick replies; Messenger shows the first %d",
            len(chips), MAX_QUICK_REPLIES,
        )
    return [
        {
            "content_type": "text",
            "title": cut(chip.title, MAX_TITLE),
            "payload": chip.payload[:MAX_PAYLOAD],
        }
        for chip in chips[:MAX_QUICK_REPLIES]
    ]


def split_text(text: str, limit: int) -> list[str]:
    """Split text into chunks of at most `limit`, at whitespace if possible.

    Lengths count UTF-16 code units, as Messenger does: an emoji takes two.
    """
    chunks = []
    rest = text.strip()
    while rest:
        if utf16_length(rest) <= limit:
            chunks.append(rest)
            break
        cut_at = fitting_prefix(rest, limit)
        space = rest.rfind(" ", 0, cut_at + 1)
        newline = rest.rfind("\n", 0, cut_at + 1)
        boundary = max(space, newline)
        if boundary > 0:
            cut_at = boundary
        chunks.append(rest[:cut_at].rstrip())
        rest = rest[cut_at:].lstrip()
    return chunks


def fitting_prefix(text: str, limit: int) -> int:
    """Return how many characters of text fit in `limit` UTF-16 units."""
    units = 0
    for index, character in enumerate(text):
        units += 2 if ord(character) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def utf16_length(text: str) -> int:
    return len(text) + sum(1 for character in text if ord(character) > 0xFFFF)


def cut(title: str, limit: int) -> str:
    """Shorten a title to `limit` characters, marking the cut."""
    if len(title) <= limit:
        return title
    return title[: limit - 1].rstrip() + "…"
