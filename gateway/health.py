"""The health check: the database and the channel layer must both answer."""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from gateway.consumers import PlainHttpConsumer

logger = logging.getLogger("gateway.health")
CHECK_TIMEOUT = 3.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await layer.receive(channel)


async def failing_parts() -> list[str]:
    checks = {
        "database": database_sync_to_async(check_database)(),
        "channel_layer": check_channel_layer(),
    }
    failing = []
    for part, check in checks.items():
        try:
            await asyncio.wait_for(check, CHECK_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - any failure is "down"
            logger.warning("health check: %s failed (%s)", part, type(error).__name__)
            failing.append(part)
    return failing


class HealthConsumer(PlainHttpConsumer):
    async def handle(self, body: bytes) -> None:
        failing = await failing_parts()
        if failing:
            status = 503
            payload = {"status": "unavailable", "failing": failing}
        else:
            status, payload = 200, {"status": "ok"}
        await self.send_response(
            status,
            json.dumps(payload).encode(),
            headers=[(b"Content-Type", b"application/json"),
                     (b"Cache-Control", b"no-store")],
        )
