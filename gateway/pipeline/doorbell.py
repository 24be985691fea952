"""Wake the workers through the channel layer.

The layer is only a doorbell: it may lose a ring (no worker listening, a
full channel, an expired message). The database is the queue, and workers
sweep it when they start and when idle, so a lost ring delays a reply but
never loses it.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
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


def ring_sync() -> None:
    async_to_sync(ring)()
