"""Read Messenger webhook deliveries: check the signature, then the payload.

The signature is checked over the raw bytes before anything is parsed.
The payload is read through a validating step into the events below; each
kind of Messenger event is either handled or acknowledged on purpose, as
the tables at the end of this module say.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botcore.messages import Attachment, Inbound, Reply

logger = logging.getLogger("gateway.facebook")

# Meta batches up to a thousand events in one delivery; this leaves room
# for that and refuses anything larger before it is read in full.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Sent as the `metadata` of every message the gateway sends, and so found
# in the echoes of those messages.
OWN_SEND_METADATA = "bot-gateway"
# The postback of Messenger's "Get started" button, when a page sets it.
GET_STARTED_PAYLOAD = "GET_STARTED"
MAX_ID_LENGTH = 64
# Times are milliseconds since 1970; this is in the year 5138.
MAX_MILLISECONDS = 10**14
ATTACHMENT_KIND = re.compile(r"^[a-z_]{1,20}$")
# What neither database stores in text or JSON: NUL, and half of a
# surrogate pair (a JSON escape may hold one).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class SignatureError(Exception):
    """The delivery is not signed with the app secret."""


class PayloadError(ValueError):
    """A payload that does not have the documented shape."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str) -> None:
    """Check X-Hub-Signature-256 (or, only without it, the legacy sha1 one).

    `headers` has lower-case names. Raise SignatureError with the reason.
    """
    signature = headers.get("x-hub-signature-256")
    algorithm, prefix = hashlib.sha256, "sha256="
    if signature is None:
        signature = headers.get("x-hub-signature")
        algorithm, prefix = hashlib.sha1, "sha1="
    if signature is None:
        raise SignatureError("missing signature")
    expected = prefix + hmac.new(secret.encode(), body, algorithm).hexdigest()
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise SignatureError(f"{prefix.rstrip('=')} signature mismatch")


@dataclass(frozen=True)
class IncomingMessage:
    """Something a person sent to the page."""

    page_id: str
    psid: str
    timestamp: int
    mid: str
    inbound: Inbound


@dataclass(frozen=True)
class PageEcho:
    """A message the page sent: by the gateway itself, or by a human."""

    page_id: str
    psid: str
    timestamp: int
    mid: str
    own_send: bool
    content: dict[str, Any]


@dataclass(frozen=True)
class Receipt:
    """A delivery or read watermark: messages up to `watermark` (ms) arrived."""

    page_id: str
    psid: str
    kind: str
    watermark: int
    mids: tuple[str, ...]


@dataclass(frozen=True)
class Acknowledged:
    """An event accepted and deliberately left alone."""

    page_id: str
    kind: str


Event = IncomingMessage | PageEcho | Receipt | Acknowledged


@dataclass(frozen=True)
class WebhookPayload:
    object: str
    events: tuple[Event, ...]
    malformed: int


def parse_payload(data: Any) -> WebhookPayload:
    """Read a decoded delivery, keeping every part that is well formed.

    A malformed part (the body, an entry, an event) is logged and skipped,
    never the delivery as a whole: Meta would send it again unchanged, and
    with it the events that were fine.
    """
    try:
        root = _object(data, "(body)")
        kind = _string(root, "object", "object")
    except PayloadError as error:
        logger.warning("skipped malformed delivery: %s", error)
        return WebhookPayload("", (), 1)
    if kind != "page":
        return WebhookPayload(kind, (), 0)
    events: list[Event] = []
    malformed = 0
    try:
        entries = _list(root.get("entry"), "entry")
    except PayloadError as error:
        logger.warning("skipped malformed delivery: %s", error)
        return WebhookPayload(kind, (), 1)
    for index, entry in enumerate(entries):
        try:
            read, skipped = read_entry(entry, f"entry[{index}]")
        except PayloadError as error:
            logger.warning("skipped malformed entry: %s", error)
            malformed += 1
            continue
        events.extend(read)
        malformed += skipped
    # Meta may batch out of order; a stable sort keeps each person's
    # messages in the order they were sent.
    events.sort(key=event_time)
    return WebhookPayload(kind, tuple(events), malformed)


def read_entry(raw: Any, path: str) -> tuple[list[Event], int]:
    """Read one entry's events; return them and how many were skipped."""
    entry = _object(raw, path)
    page_id = _identifier(entry, "id", f"{path}.id")
    events: list[Event] = []
    malformed = 0
    for event_path, event in _entry_events(entry, path):
        try:
            events.append(read_event(page_id, event, event_path))
        except PayloadError as error:
            malformed += 1
            logger.warning("skipped malformed event: %s", error)
    if "standby" in entry:
        events.append(Acknowledged(page_id, "standby"))
    return events, malformed


def event_time(event: Event) -> int:
    if isinstance(event, IncomingMessage | PageEcho):
        return event.timestamp
    return 0


def _entry_events(entry: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    if "messaging" not in entry:
        return []
    items = _list(entry["messaging"], f"{path}.messaging")
    return [(f"{path}.messaging[{i}]", item) for i, item in enumerate(items)]


def read_event(page_id: str, raw: Any, path: str) -> Event:
    event = _object(raw, path)
    for kind, reader in HANDLED_EVENTS.items():
        if kind in event:
            return reader(page_id, event, path)
    for kind in ACKNOWLEDGED_EVENTS:
        if kind in event:
            return Acknowledged(page_id, kind)
    return Acknowledged(page_id, "unknown")


def read_message(page_id: str, event: dict[str, Any], path: str) -> Event:
    message = _object(event["message"], f"{path}.message")
    timestamp = _timestamp(event, path)
    mid = _identifier(message, "mid", f"{path}.message.mid", limit=200)
    if message.get("is_echo") is True:
        psid = _party(event, "recipient", path)
        return PageEcho(
            page_id, psid, timestamp, mid,
            own_send=message.get("metadata") == OWN_SEND_METADATA,
            content=echo_content(message, f"{path}.message"),
        )
    psid = _party(event, "sender", path)
    inbound = message_inbound(message, f"{path}.message")
    return IncomingMessage(page_id, psid, timestamp, mid, inbound)


def message_inbound(message: dict[str, Any], path: str) -> Inbound:
    text = _optional_string(message, "text", f"{path}.text")
    if "quick_reply" in message:
        chip = _object(message["quick_reply"], f"{path}.quick_reply")
        payload = _string(chip, "payload", f"{path}.quick_reply.payload")
        return Inbound("postback", text=text, payload=payload)
    if "attachments" in message:
        attachments = _attachments(message["attachments"], f"{path}.attachments")
        return Inbound("attachments", text=text, attachments=attachments)
    if text is not None:
        return Inbound("text", text=text)
    return Inbound("attachments", attachments=(Attachment("unsupported"),))


def echo_content(message: dict[str, Any], path: str) -> dict[str, Any]:
    text = _optional_string(message, "text", f"{path}.text") or ""
    image = None
    if "attachments" in message:
        for attachment in _attachments(message["attachments"], f"{path}.attachments"):
            if attachment.kind == "image" and attachment.url:
                image = attachment.url
                break
    return Reply(text=text, image=image).as_dict()


def read_postback(page_id: str, event: dict[str, Any], path: str) -> Event:
    postback = _object(event["postback"], f"{path}.postback")
    psid = _party(event, "sender", path)
    timestamp = _timestamp(event, path)
    payload = _optional_string(postback, "payload", f"{path}.postback.payload") or ""
    title = _optional_string(postback, "title", f"{path}.postback.title")
    mid = _optional_string(postback, "mid", f"{path}.postback.mid")
    if mid is None:
        # Older postbacks carry no id; this one is the same on redelivery.
        seed = f"{page_id}:{psid}:{timestamp}:{payload}".encode()
        mid = "postback." + hashlib.sha256(seed).hexdigest()[:40]
    if payload == GET_STARTED_PAYLOAD:
        inbound = Inbound("greeting")
    else:
        inbound = Inbound("postback", text=title, payload=payload)
    return IncomingMessage(page_id, psid, timestamp, mid[:200], inbound)


def read_receipt(page_id: str, event: dict[str, Any], path: str) -> Event:
    kind = "delivery" if "delivery" in event else "read"
    receipt = _object(event[kind], f"{path}.{kind}")
    watermark = _milliseconds(receipt.get("watermark"), f"{path}.{kind}.watermark")
    mids = tuple(
        _string({"mid": mid}, "mid", f"{path}.{kind}.mids")
        for mid in _list(receipt.get("mids", []), f"{path}.{kind}.mids")
    )
    psid = _party(event, "sender", path)
    return Receipt(page_id, psid, kind, watermark, mids)


# The events of a Messenger entry the gateway acts on, and how it reads them.
HANDLED_EVENTS: dict[str, Callable[[str, dict[str, Any], str], Event]] = {
    "message": read_message,  # text, quick replies, attachments, echoes
    "postback": read_postback,
    "delivery": read_receipt,
    "read": read_receipt,
}
# Events acknowledged on purpose, with the reason nothing is done.
ACKNOWLEDGED_EVENTS: dict[str, str] = {
    "reaction": "a reaction asks nothing of the bot",
    "message_edit": "the bot answered the text as first sent",
    "optin": "the gateway sends no notification messages",
    "referral": "the conversation is the same whatever link led to it",
    "account_linking": "the gateway links no accounts",
    "policy_enforcement": "Meta's notice to the page owner, not to the bot",
    "pass_thread_control": "handover is not used",
    "take_thread_control": "handover is not used",
    "request_thread_control": "handover is not used",
    "app_roles": "handover is not used",
    "game_play": "no games",
    "messaging_feedback": "surveys are not sent",
    "response_feedback": "surveys are not sent",
}
# An entry's `standby` list carries events of threads another app
# controls: acknowledged as one event, never answered.


def attachment_url(kind: str, url: Any) -> str | None:
    # A location's link carries its coordinates: not kept.
    if kind == "location" or not isinstance(url, str):
        return None
    if not url.startswith("https://") or len(url) > 2000 or UNSTORABLE.search(url):
        return None
    return url


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(path, "must be an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(path, "must be a list")
    return value


def _string(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(path, "must be a non-empty string")
    return storable(value)


def _optional_string(data: dict[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    return storable(value)


def storable(text: str) -> str:
    """Replace the characters no database stores with U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)


def _identifier(
    data: dict[str, Any], key: str, path: str, *, limit: int = MAX_ID_LENGTH
) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise PayloadError(path, f"must be an id of at most {limit} characters")
    if UNSTORABLE.search(value):
        raise PayloadError(path, "must be an id without NUL or lone surrogates")
    return value


def _party(event: dict[str, Any], role: str, path: str) -> str:
    party = _object(event.get(role), f"{path}.{role}")
    return _identifier(party, "id", f"{path}.{role}.id")


def _timestamp(event: dict[str, Any], path: str) -> int:
    return _milliseconds(event.get("timestamp"), f"{path}.timestamp")


def _milliseconds(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(path, "must be an integer (ms)")
    if not 0 < value < MAX_MILLISECONDS:
        raise PayloadError(path, "must be a time in milliseconds since 1970")
    return value


def _attachments(value: Any, path: str) -> tuple[Attachment, ...]:
    attachments = []
    for index, item in enumerate(_list(value, path)):
        item = _object(item, f"{path}[{index}]")
        kind = item.get("type")
        if not isinstance(kind, str) or not ATTACHMENT_KIND.match(kind):
            kind = "unknown"
        payload = item.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        if kind == "image" and payload.get("sticker_id") is not None:
            kind = "sticker"
        url = attachment_url(kind, payload.get("url") or item.get("url"))
        attachments.append(Attachment(kind, url))
    return tuple(attachments)
