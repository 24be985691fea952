"""A ring wakes the workers through the ASGI routes.

That a ring sent on the layer wakes a worker process is tested in
test_modes, with real processes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.testing import ApplicationCommunicator
from channels.layers import InMemoryChannelLayer

from gateway.asgi import application
from gateway.pipeline.doorbell import DOORBELL_CHANNEL, SharedRing, on_ring


async def test_the_worker_channel_is_routed_to_the_doorbell() -> None:
    woken = asyncio.Event()
    on_ring(woken)
    scope = {"type": "channel", "channel": DOORBELL_CHANNEL}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "wake"})
    await asyncio.wait_for(woken.wait(), 5)
    communicator.stop()


async def rings_waiting(layer: Any) -> int:
    """Take every ring waiting on the worker's channel; return how many."""
    count = 0
    while True:
        try:
            await asyncio.wait_for(layer.receive(DOORBELL_CHANNEL), 0.3)
        except TimeoutError:
            return count
        count += 1


class SlowLayer(InMemoryChannelLayer):
    """A layer whose sends take a while, as a round trip to Redis does."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)
        await super().send(channel, message)


async def test_batches_asking_while_a_ring_is_out_share_one_more() -> None:
    layer = SlowLayer()
    shared = SharedRing(layer)
    await asyncio.gather(*(shared.ring() for _ in range(10)))
    # The first, then one for all that asked while it was on its way.
    assert await rings_waiting(layer) == 2
    await shared.ring()
    assert await rings_waiting(layer) == 1
