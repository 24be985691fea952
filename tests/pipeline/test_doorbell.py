"""A ring wakes the workers through the ASGI routes.

That a ring sent on the layer wakes a worker process is tested in
test_modes, with real processes.
"""

from __future__ import annotations

import asyncio

from asgiref.testing import ApplicationCommunicator

from gateway.asgi import application
from gateway.pipeline.doorbell import DOORBELL_CHANNEL, on_ring


async def test_the_worker_channel_is_routed_to_the_doorbell() -> None:
    woken = asyncio.Event()
    on_ring(woken)
    scope = {"type": "channel", "channel": DOORBELL_CHANNEL}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "wake"})
    await asyncio.wait_for(woken.wait(), 5)
    communicator.stop()
