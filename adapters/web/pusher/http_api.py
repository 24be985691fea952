"""The Pusher HTTP API: /apps/APP_ID/events, batch_events and channels.

Requests are signed as Pusher signs them and answered as Pusher answers:
JSON on success, a short text body with the status on failure.
"""

import json
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from .consumer import FastPathMixin
from .hub import get_hub
from .names import is_presence, is_valid_channel_name, is_valid_socket_id
from .publish import DataTooLarge, PublishError, event_message, send_event_message
from .signing import SignatureError, verify_request

logger = logging.getLogger("gateway.pusher")

MAX_BODY_BYTES = 256 * 1024
MAX_CHANNELS_PER_EVENT = 100
MAX_BATCH_EVENTS = 10
CHANNEL_INFO = frozenset({"subscription_count", "user_count"})


class ApiError(Exception):
    """A refused request, with the status and text Pusher would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return payload


def checked_event(
    channel: object, name: object, data: object, socket_id: object
) -> dict[str, str]:
    """Return the layer message of one event, or raise ApiError."""
    if not is_valid_channel_name(channel):
        raise ApiError(400, "Invalid channel name")
    if not isinstance(name, str):
        raise ApiError(400, "Invalid event name")
    excluded = ""
    if socket_id is not None:
        if not is_valid_socket_id(socket_id):
            raise ApiError(400, "Invalid socket_id")
        excluded = socket_id
    try:
        return event_message(channel, name, data, excluded)
    except DataTooLarge as error:
        raise ApiError(413, str(error)) from None
    except PublishError as error:
        raise ApiError(400, str(error)) from None


def event_messages(payload: dict[str, Any]) -> list[dict[str, str]]:
    """Read the body of POST events: one event, up to 100 channels."""
    channels = payload.get("channels")
    if channels is None and "channel" in payload:
        channels = [payload["channel"]]
    if not isinstance(channels, list) or not channels:
        raise ApiError(400, "Missing channels")
    if len(channels) > MAX_CHANNELS_PER_EVENT:
        raise ApiError(400, f"Too many channels: at most {MAX_CHANNELS_PER_EVENT}")
    event = (payload.get("name"), payload.get("data"), payload.get("socket_id"))
    return [checked_event(channel, *event) for channel in channels]


def batch_messages(payload: dict[str, Any]) -> list[dict[str, str]]:
    """Read the body of POST batch_events: up to 10 events."""
    batch = payload.get("batch")
    if not isinstance(batch, list) or not batch:
        raise ApiError(400, "Missing batch")
    if len(batch) > MAX_BATCH_EVENTS:
        raise ApiError(400, f"Batch too large: at most {MAX_BATCH_EVENTS} events")
    if not all(isinstance(event, dict) for event in batch):
        raise ApiError(400, "Each batch entry must be an object")
    return [
        checked_event(
            event.get("channel"),
            event.get("name"),
            event.get("data"),
            event.get("socket_id"),
        )
        for event in batch
    ]


def requested_info(params: dict[str, str]) -> set[str]:
    info = {item for item in params.get("info", "").split(",") if item}
    if not info <= CHANNEL_INFO:
        raise ApiError(400, "Unsupported info attribute")
    return info


class PusherHttpApi(FastPathMixin, AsyncHttpConsumer):
    """Answer one signed HTTP API request."""

    received = 0

    async def http_request(self, message: dict[str, Any]) -> None:
        self.received += len(message.get("body", b""))
        if self.received > MAX_BODY_BYTES:
            await self.send_text(413, "Request body too large")
            raise StopConsumer()
        await super().http_request(message)

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        try:
            answer = await self.answer(body)
        except (ApiError, SignatureError) as error:
            logger.info("Refused an HTTP API request: %s", error.message)
            await self.send_text(error.status, error.message)
        except Exception:
            logger.exception("HTTP API request failed")
            await self.send_text(500, "Internal error")
        else:
            await self.send_response(
                200,
                json.dumps(answer).encode(),
                headers=[(b"Content-Type", b"application/json")],
            )

    async def send_text(self, status: int, message: str) -> None:
        await self.send_response(
            status,
            (message + "\n").encode(),
            headers=[(b"Content-Type", b"text/plain; charset=utf-8")],
        )

    async def answer(self, body: bytes) -> dict[str, Any]:
        kwargs = self.scope["url_route"]["kwargs"]
        if kwargs["app_id"] != str(settings.PUSHER_APP_ID):
            raise ApiError(404, "Unknown app")
        resource = kwargs["resource"]
        method = self.scope["method"]
        expected = "GET" if resource.startswith("channels") else "POST"
        if method != expected:
            raise ApiError(405, "Method not allowed")
        params = verify_request(
            method, self.scope["path"], self.scope["query_string"], body
        )
        if resource == "events":
            return await self.publish(event_messages(parse_json_object(body)))
        if resource == "batch_events":
            return await self.publish(batch_messages(parse_json_object(body)))
        return await self.channels_info(resource, params)

    async def publish(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        # One after the other: events of a batch keep their order.
        for message in messages:
            await send_event_message(message)
        return {}

    async def channels_info(
        self, resource: str, params: dict[str, str]
    ) -> dict[str, Any]:
        parts = resource.split("/")
        info = requested_info(params)
        if parts == ["channels"]:
            return await self.list_channels(params.get("filter_by_prefix", ""), info)
        if len(parts) == 2:
            return await self.channel_info(parts[1], info)
        if len(parts) == 3 and parts[2] == "users":
            raise ApiError(400, "Presence channels are not supported")
        raise ApiError(404, "Not found")

    async def list_channels(self, prefix: str, info: set[str]) -> dict[str, Any]:
        if "user_count" in info and not prefix.startswith("presence-"):
            raise ApiError(400, "user_count is only available for presence channels")
        counts = await get_hub().counts()
        channels = {
            name: {"subscription_count": count} if "subscription_count" in info else {}
            for name, count in sorted(counts.items())
            if name.startswith(prefix)
        }
        return {"channels": channels}

    async def channel_info(self, channel: str, info: set[str]) -> dict[str, Any]:
        if not is_valid_channel_name(channel):
            raise ApiError(400, "Invalid channel name")
        if "user_count" in info and not is_presence(channel):
            raise ApiError(400, "user_count is only available for presence channels")
        count = await get_hub().count_everywhere(channel)
        answer: dict[str, Any] = {"occupied": count > 0}
        if "subscription_count" in info:
            answer["subscription_count"] = count
        if "user_count" in info:
            answer["user_count"] = 0
        return answer
