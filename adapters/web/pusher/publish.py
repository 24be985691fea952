"""Publish events to Pusher channels served by the gateway itself."""

import json
import time
from typing import Any

from asgiref.sync import async_to_sync

from .hub import EVENT_MESSAGE
from .layers import fanout_layer
from .names import group_name, is_valid_channel_name, is_valid_event_name

MAX_DATA_BYTES = 10 * 1024


class PublishError(ValueError):
    """An event that Pusher would refuse: bad names or too much data."""


class DataTooLarge(PublishError):
    """Event data over Pusher's limit of 10 KB."""


def encode_data(data: Any) -> str:
    """Return event data as Pusher carries it: a string, JSON unless one."""
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"))


def event_message(
    channel_name: str, event: str, data: Any, except_socket_id: str = ""
) -> dict[str, str]:
    """Build the channel layer message of one event, checking it first."""
    if not is_valid_channel_name(channel_name):
        raise PublishError("Invalid channel name")
    if not is_valid_event_name(event):
        raise PublishError("Invalid event name")
    text = encode_data(data)
    if len(text.encode()) > MAX_DATA_BYTES:
        raise DataTooLarge("Event data is larger than 10 KB")
    return {
        "type": EVENT_MESSAGE,
        "group": group_name(channel_name),
        "event": event,
        "data": text,
        "except": except_socket_id,
    }


async def publish(
    channel_name: str, event: str, data: Any, except_socket_id: str = ""
) -> None:
    """Send an event to the channel's subscribers in every web process.

    Data that is not a string is sent as JSON. With ``except_socket_id``
    the socket of that id does not get it. Raise PublishError for an event
    Pusher would refuse.
    """
    await send_event_message(event_message(channel_name, event, data, except_socket_id))


async def send_event_message(message: dict[str, str]) -> None:
    """Send a message built by event_message to its channel layer group."""
    layer = fanout_layer()
    if layer is None:
        raise RuntimeError("The self-hosted Pusher server needs a channel layer")
    # The time of sending lets the hubs notice when they fall behind.
    await layer.group_send(message["group"], {**message, "sent_at": time.time()})


def publish_sync(
    channel_name: str, event: str, data: Any, except_socket_id: str = ""
) -> None:
    """Publish from synchronous code."""
    async_to_sync(publish)(channel_name, event, data, except_socket_id)
