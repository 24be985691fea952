"""What both Pusher consumers share: a path that stays cheap per message."""

from typing import Any

from channels.consumer import get_handler_name

from gateway.consumers import NO_CHANNEL_LAYER


class FastPathMixin:
    """Skip the per-consumer channel layer and the per-message database hop.

    The hub receives for the whole process, so a consumer needs no layer
    channel and no receive task of its own. And since the Pusher consumers
    never touch the database, Channels' connection cleanup around every
    message, a thread hop per websocket frame or HTTP request, is skipped.
    """

    channel_layer_alias = NO_CHANNEL_LAYER

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
