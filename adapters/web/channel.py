"""The web channel: publish the bot's replies to the chat's Pusher channel.

With ``PUSHER_URL`` set, replies go through the ``pusher`` library to
Pusher Channels; otherwise straight to the gateway's own Pusher server
through the channel layer. An event's data is one message as
``GET messages`` lists it; one over Pusher's 10 KB limit is sent in parts.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import pusher
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http.request import split_domain_port

from adapters.web.chats import bot_message_payload
from adapters.web.cors import header
from adapters.web.pusher.publish import publish
from adapters.web.tokens import chat_channels_for, token_expiry
from gateway.pipeline.adapters import ChannelAdapter, TemporaryDeliveryError
from storage.models import Message

logger = logging.getLogger("gateway.web")
EVENT = "message"
# Pusher refuses event data over 10,240 bytes; keep a margin.
MAX_EVENT_BYTES = 10_000
DEFAULT_CLUSTER = "mt1"
CLOUD_API_HOST = re.compile(r"api-([a-z0-9-]+)\.pusher\.com")


def encode_event(payload: dict[str, Any]) -> str:
    """Encode event data in ASCII, so that its length is its size in bytes."""
    return json.dumps(payload, separators=(",", ":"))


def split_payload(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a message that is too large for one event into parts.

    Each part is the message with a slice of its text, numbered with
    ``part`` and ``parts``; the buttons, quick replies and image travel with
    the last part, so that they come with the end of the text.
    """
    if len(encode_event(payload)) <= MAX_EVENT_BYTES:
        return [payload]
    bare = {**payload, "text": "", "buttons": [], "quick_replies": [], "image": None}
    chunks = _text_chunks(payload["text"], _room(bare))
    extras = {key: payload[key] for key in ("buttons", "quick_replies", "image")}
    last = {**bare, **extras, "text": chunks[-1] if chunks else ""}
    if len(encode_event(_numbered(last, 99, 99))) <= MAX_EVENT_BYTES:
        parts = [{**bare, "text": chunk} for chunk in chunks[:-1]] + [last]
    else:
        parts = [{**bare, "text": chunk} for chunk in chunks]
        parts.append({**bare, **extras})
    return [_numbered(part, number, len(parts)) for number, part in enumerate(parts, 1)]


def _numbered(part: dict[str, Any], number: int, parts: int) -> dict[str, Any]:
    return {**part, "part": number, "parts": parts}


def _room(bare: dict[str, Any]) -> int:
    """Bytes left for text in an event carrying only the bare message."""
    return MAX_EVENT_BYTES - len(encode_event(_numbered(bare, 99, 99)))


def _text_chunks(text: str, room: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for character in text:
        size = len(json.dumps(character)) - 2
        if used + size > room:
            chunks.append("".join(current))
            current, used = [], 0
        current.append(character)
        used += size
    if current:
        chunks.append("".join(current))
    return chunks


class Publisher:
    """Send one event to some channels; raise on failure."""

    def publish(self, channels: list[str], data: str) -> None:
        raise NotImplementedError


class CloudPublisher(Publisher):
    """Publish through Pusher Channels' HTTP API."""

    def __init__(self, url: str) -> None:
        # Not Pusher.from_url: it takes "host:port" for the host name.
        parts = urlsplit(url)
        self.client = pusher.Pusher(
            app_id=parts.path.rstrip("/").rsplit("/", 1)[-1],
            key=unquote(parts.username or ""),
            secret=unquote(parts.password or ""),
            host=parts.hostname,
            port=parts.port,
            ssl=parts.scheme == "https",
            timeout=5,
        )

    def publish(self, channels: list[str], data: str) -> None:
        self.client.trigger(channels, EVENT, data)


class SelfHostedPublisher(Publisher):
    """Publish to the gateway's own Pusher server through the channel layer."""

    def publish(self, channels: list[str], data: str) -> None:
        for channel in channels:
            async_to_sync(publish)(channel, EVENT, data)


@lru_cache(maxsize=2)
def publisher_for(pusher_url: str) -> Publisher:
    if pusher_url:
        return CloudPublisher(pusher_url)
    return SelfHostedPublisher()


class WebAdapter(ChannelAdapter):
    """Deliver the bot's replies to web chats."""

    channel = "web"

    def deliver(self, message: Message) -> str | None:
        conversation = message.conversation
        # Chats begun before the expiry was stored: the TTL is today's.
        expires_at = conversation.chat_token_expires_at or token_expiry(
            conversation.created_at
        )
        channels = chat_channels_for(conversation.pk, conversation.bot_id, expires_at)
        publisher = publisher_for(settings.PUSHER_URL)
        for part in split_payload(bot_message_payload(message)):
            try:
                publisher.publish(channels, encode_event(part))
            except Exception as error:
                logger.warning(
                    "message %s: publish failed (%s)", message.pk, type(error).__name__
                )
                raise TemporaryDeliveryError(
                    f"publish failed: {type(error).__name__}"
                ) from error
        return None


def client_options(scope: dict[str, Any]) -> dict[str, Any]:
    """Return the options pusher-js needs to reach the Pusher server."""
    if settings.PUSHER_URL:
        return _cloud_options(urlsplit(settings.PUSHER_URL))
    return _self_hosted_options(scope)


def _cloud_options(url: SplitResult) -> dict[str, Any]:
    host = url.hostname or ""
    secure = url.scheme == "https"
    official = host.endswith((".pusher.com", ".pusherapp.com"))
    match = CLOUD_API_HOST.fullmatch(host)
    cluster = match.group(1) if match else DEFAULT_CLUSTER
    ws_port, wss_port = 80, 443
    if not official and url.port:
        # A Pusher-compatible server serves its websockets beside its API.
        ws_port = wss_port = url.port
    return _options(
        cluster,
        settings.PUSHER_WS_HOST or (f"ws-{cluster}.pusher.com" if official else host),
        (ws_port, wss_port),
        secure,
    )


def _self_hosted_options(scope: dict[str, Any]) -> dict[str, Any]:
    secure = (
        scope.get("scheme") == "https"
        or header(scope, b"x-forwarded-proto") == "https"
    )
    domain, port = split_domain_port(header(scope, b"host") or "")
    ws_port = int(port or (443 if secure else 80))
    return _options(
        DEFAULT_CLUSTER,
        settings.PUSHER_WS_HOST or domain or "localhost",
        (ws_port, ws_port),
        secure,
    )


def _options(
    cluster: str, ws_host: str, ports: tuple[int, int], secure: bool
) -> dict[str, Any]:
    if settings.PUSHER_WS_PORT:
        ports = (int(settings.PUSHER_WS_PORT), int(settings.PUSHER_WS_PORT))
    return {
        "key": settings.PUSHER_KEY,
        "cluster": cluster,
        "wsHost": ws_host,
        "wsPort": ports[0],
        "wssPort": ports[1],
        "forceTLS": secure,
    }
