"""What both Pusher consumers share: a path that stays cheap per message."""

from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer


class FastPathMixin:
    """Run a consumer on nothing but its ASGI receive callable.

    Channels' own loop gives every consumer a channel layer channel and a
    task that listens on it, plus a task around each receive, and closes
    old database connections (a thread hop) around every message. The hub
    receives from the channel layer for the whole process and these
    consumers never touch the database, so a plain loop does the job with
    a fraction of the memory per connection and no thread hop.
    """

    channel_layer = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
