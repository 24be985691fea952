"""Wake the workers through the channel layer.

The layer is only a doorbell: it may lose a ring (no worker listening, a
full channel, an expired message). The database is the queue, and workers
sweep it when they start and when idle, so a lost ring delays a reply but
never loses it.

A ring is a message on the worker's channel, routed by the ASGI
application (``gateway.asgi``) to `DoorbellConsumer`, which wakes every
worker of the process.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.consumer import AsyncConsumer
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer

DOORBELL_CHANNEL = "gateway-worker"
logger = logging.getLogger("gateway.pipeline")


async def ring(layer: BaseChannelLayer | None = None) -> None:
    """Wake a worker through `layer`, by default the configured one."""
    layer = layer or get_channel_layer()
    if layer is None:
        return
    try:
        await layer.send(DOORBELL_CHANNEL, {"type": "wake"})
    except ChannelFull:
        logger.warning("doorbell channel full; workers will find the work anyway")
    except Exception:
        logger.exception("doorbell could not be rung")


class SharedRing:
    """The rings of one process's batches, one on its way at a time.

    Under load, batches of stored messages commit faster than rings go out.
    A batch that asks while a ring is on its way gets one more ring once
    that one is out (the worker it woke may have looked before this batch
    was committed), and the batches that ask meanwhile share it.
    """

    def __init__(self, layer: BaseChannelLayer | None = None) -> None:
        self.layer = layer
        # Per event loop: (a ring is on its way, another is wanted after it).
        self.states: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[bool]
        ] = weakref.WeakKeyDictionary()

    async def ring(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.states.setdefault(loop, [False, False])
        if state[0]:
            state[1] = True
            return
        state[0] = True
        try:
            state[1] = True
            while state[1]:
                state[1] = False
                await ring(self.layer)
        finally:
            state[0] = False


shared_ring = SharedRing()


def ring_sync() -> None:
    async_to_sync(ring)()


class Wakeable(Protocol):
    """What a ring wakes: an asyncio.Event, or the runner's idle slots."""

    def set(self) -> None: ...


_wake_events: weakref.WeakSet[Wakeable] = weakref.WeakSet()


def on_ring(event: Wakeable) -> None:
    """Set this event whenever the doorbell rings in this process."""
    _wake_events.add(event)


class DoorbellConsumer(AsyncConsumer):
    """The worker's channel: each ring wakes the process's workers."""

    # Its messages come from the worker's channel; a layer channel of its
    # own would be one more receive on Redis for nothing.
    channel_layer_alias = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first closes stale database connections in a
        # thread; a ring touches no database.
        if message.get("type") == "wake":
            await self.wake(message)

    async def wake(self, message: dict[str, Any]) -> None:
        for event in list(_wake_events):
            event.set()
