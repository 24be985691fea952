"""The base of the HTTP consumers that answer ahead of Django's stack."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer


class PlainHttpConsumer(AsyncHttpConsumer):
    """An HTTP consumer run on nothing but its ASGI receive callable.

    Channels' own loop opens a channel layer channel per consumer and
    listens on it for the whole request (a round trip to Redis), starts a
    task per receive, and hops to a thread around every message to close
    old database connections. A consumer that answers by itself and reaches
    the database through its own thread hop (which looks after its
    connection) needs none of that; on the hot paths it cost about a third
    of the throughput (bench/web_api.py).
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                message = await receive()
                handler = getattr(self, get_handler_name(message), None)
                if handler is None:
                    return
                await handler(message)
        except StopConsumer:
            pass

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        await self.disconnect()
        raise StopConsumer()
