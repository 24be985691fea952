"""The Pusher protocol 7 websocket, served at /app/KEY."""

import json
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from .consumer import FastPathMixin
from .hub import ACTIVITY_TIMEOUT, get_hub
from .names import (
    CLIENT_EVENT_PREFIX,
    is_encrypted,
    is_presence,
    is_valid_channel_name,
    needs_authorization,
)
from .publish import PublishError, publish
from .signing import constant_time_equal, verify_channel_auth

logger = logging.getLogger("gateway.pusher")

PROTOCOL_VERSIONS = frozenset({"5", "6", "7"})
VERSION_FORMAT = re.compile(r"[0-9]+")
MAX_FRAME_CHARS = 16 * 1024
MAX_SUBSCRIPTIONS = 100
CLIENT_EVENTS_PER_SECOND = 10
PONG_FRAME = '{"event":"pusher:pong","data":{}}'

# Events a client may send, by handler; pusher:signin (user authentication)
# and presence channels are refused on purpose: the gateway does not use them.
HANDLERS = {
    "pusher:ping": "on_ping",
    "pusher:pong": "on_pong",
    "pusher:subscribe": "on_subscribe",
    "pusher:unsubscribe": "on_unsubscribe",
}
REFUSED = {
    "pusher:signin": "User authentication is not supported",
}


def new_socket_id() -> str:
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def parse_frame(text: str) -> dict[str, Any] | None:
    """Return a client frame, or None unless it is an object with an event."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        return None
    return frame


def frame_data(frame: dict[str, Any]) -> dict[str, Any]:
    """Return a frame's data object; some clients send it as a JSON string."""
    data = frame.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def protocol_refusal(protocol: str) -> tuple[int, str] | None:
    """Return the close code and reason that refuse a protocol version."""
    if not protocol:
        return 4008, "No protocol version supplied"
    if not VERSION_FORMAT.fullmatch(protocol):
        return 4006, "Invalid version string format"
    # Compared as text: int() of a long string of digits costs, or fails.
    if protocol.lstrip("0") not in PROTOCOL_VERSIONS:
        return 4007, "Unsupported protocol version"
    return None


def error_frame(message: str, code: int | None) -> str:
    error = {"event": "pusher:error", "data": {"code": code, "message": message}}
    return json.dumps(error, separators=(",", ":"))


class UnknownPathSocket(FastPathMixin, AsyncWebsocketConsumer):
    """A websocket anywhere but /app/KEY, closed as Pusher closes it."""

    groups = ()

    async def connect(self) -> None:
        await self.accept()
        logger.info("Refused a websocket: Path not found")
        await self.send(text_data=error_frame("Path not found", 4005))
        await self.close(4005)


class PusherSocket(FastPathMixin, AsyncWebsocketConsumer):
    """One client connection.

    Per-connection state stays small: the socket id, its subscriptions and
    a few numbers. The hub fans events out to it and watches its activity.
    """

    # No channel layer groups of its own: a tuple spares a list per socket.
    groups = ()
    socket_id = ""
    last_seen = 0.0
    pinged = False
    subscriptions: set[str]
    client_event_second = 0
    client_events = 0

    async def connect(self) -> None:
        await self.accept()
        refusal = self.connection_refusal()
        if refusal is not None:
            code, reason = refusal
            logger.info("Refused a websocket: %s", reason)
            await self.send_error(reason, code)
            await self.close(code)
            return
        self.socket_id = new_socket_id()
        # Nothing here reads the handshake's headers, and an idle socket
        # should not keep them (2 KB and more: user agent, cookies). Daphne
        # only reads this list while it opens the connection.
        self.scope["headers"].clear()
        self.subscriptions = set()
        self.last_seen = time.monotonic()
        hub = get_hub()
        await hub.start()
        hub.add(self)
        established = {
            "socket_id": self.socket_id,
            "activity_timeout": ACTIVITY_TIMEOUT,
        }
        await self.send_event("pusher:connection_established", json.dumps(established))

    def connection_refusal(self) -> tuple[int, str] | None:
        """Return the close code and reason that refuse this connection."""
        key = self.scope["url_route"]["kwargs"].get("key", "")
        if not constant_time_equal(key, settings.PUSHER_KEY):
            return 4001, "Application does not exist"
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return protocol_refusal(query.get("protocol", [""])[0])

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.socket_id:
            get_hub().remove(self, self.subscriptions)
        raise StopConsumer()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if not self.socket_id:
            return  # refused, and closing
        self.last_seen = time.monotonic()
        self.pinged = False
        if text_data is None:
            await self.send_error("Binary frames are not supported")
        elif len(text_data) > MAX_FRAME_CHARS:
            await self.send_error("Message too large")
        else:
            await self.handle_frame(text_data)

    async def handle_frame(self, text: str) -> None:
        frame = parse_frame(text)
        if frame is None:
            await self.send_error("Invalid message: not a JSON object with an event")
            return
        event = frame["event"]
        if event in HANDLERS:
            await getattr(self, HANDLERS[event])(frame)
        elif event.startswith(CLIENT_EVENT_PREFIX):
            await self.on_client_event(frame)
        else:
            await self.send_error(REFUSED.get(event, "Unsupported event"))

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame(PONG_FRAME)

    async def on_pong(self, frame: dict[str, Any]) -> None:
        """Nothing to do: any frame counts as activity."""

    async def on_subscribe(self, frame: dict[str, Any]) -> None:
        data = frame_data(frame)
        channel = data.get("channel")
        if not is_valid_channel_name(channel):
            await self.send_error("Invalid channel name")
            return
        if channel not in self.subscriptions:
            refusal = self.subscription_refusal(channel, data.get("auth"))
            if refusal is not None:
                await self.refuse_subscription(channel, *refusal)
                return
            if not await self.join(channel):
                return
        await self.send_event("pusher_internal:subscription_succeeded", "{}", channel)

    def subscription_refusal(
        self, channel: str, auth: object
    ) -> tuple[int, str] | None:
        """Return the status and reason that refuse a subscription."""
        if is_presence(channel):
            return 403, "Presence channels are not supported"
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            return 429, "Too many subscriptions on one connection"
        if needs_authorization(channel) and not verify_channel_auth(
            self.socket_id, channel, auth
        ):
            return 401, "Invalid signature"
        return None

    async def join(self, channel: str) -> bool:
        try:
            await get_hub().join(channel, self)
        except Exception as error:  # noqa: BLE001 - refuse, and say so
            logger.warning("Joining a channel failed: %s", type(error).__name__)
            await self.refuse_subscription(channel, 503, "Subscription failed")
            return False
        self.subscriptions.add(channel)
        return True

    async def refuse_subscription(self, channel: str, status: int, reason: str) -> None:
        logger.info("Refused a subscription: %s", reason)
        kind = "AuthError" if status == 401 else "SubscriptionError"
        error = {"type": kind, "error": reason, "status": status}
        await self.send_event("pusher:subscription_error", error, channel)
        await self.send_error(reason)

    async def on_unsubscribe(self, frame: dict[str, Any]) -> None:
        channel = frame_data(frame).get("channel")
        if isinstance(channel, str) and channel in self.subscriptions:
            self.subscriptions.discard(channel)
            get_hub().leave(channel, self)

    async def on_client_event(self, frame: dict[str, Any]) -> None:
        refusal = self.client_event_refusal(frame.get("channel"))
        if refusal is not None:
            code, reason = refusal
            await self.send_error(reason, code)
            return
        try:
            await publish(
                frame["channel"], frame["event"], frame.get("data"), self.socket_id
            )
        except PublishError as error:
            await self.send_error(f"Client event rejected: {error}")

    def client_event_refusal(self, channel: object) -> tuple[int | None, str] | None:
        """Return the error code and reason that refuse a client event."""
        if not settings.PUSHER_CLIENT_EVENTS:
            return None, "Client events are not enabled"
        if not isinstance(channel, str) or channel not in self.subscriptions:
            return None, "Client event rejected: not subscribed to the channel"
        if not needs_authorization(channel) or is_encrypted(channel):
            return None, "Client events need a private, unencrypted channel"
        second = int(time.monotonic())
        if second != self.client_event_second:
            self.client_event_second, self.client_events = second, 0
        self.client_events += 1
        if self.client_events > CLIENT_EVENTS_PER_SECOND:
            return 4301, "Client event rejected due to rate limit"
        return None

    async def send_event(
        self, event: str, data: object, channel: str | None = None
    ) -> None:
        frame: dict[str, object] = {"event": event, "data": data}
        if channel is not None:
            frame["channel"] = channel
        await self.send_frame(json.dumps(frame, separators=(",", ":")))

    async def send_error(self, message: str, code: int | None = None) -> None:
        await self.send_frame(error_frame(message, code))

    async def send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def close_with(self, code: int, reason: str) -> None:
        logger.info("Closing a websocket: %s", reason)
        await self.close(code, reason)
