"""Run the worker's slots in an event loop, woken by the doorbell."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections

from gateway.pipeline.doorbell import DOORBELL_CHANNEL, on_ring
from gateway.pipeline.worker import (
    new_worker_id,
    next_due_in,
    process_one_conversation,
    where_raised,
)

logger = logging.getLogger("gateway.pipeline")


class WorkerRunner:
    """Several slots, each handling one conversation at a time."""

    def __init__(self, concurrency: int | None = None) -> None:
        self.worker_id = new_worker_id()
        self.concurrency = concurrency or settings.WORKER_CONCURRENCY
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        logger.info(
            "worker %s started with %d slots", self.worker_id, self.concurrency
        )
        tasks = [asyncio.create_task(self.listen())]
        tasks += [asyncio.create_task(self.slot()) for _ in range(self.concurrency)]
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()

    async def listen(self) -> None:
        """Serve the worker's channel through the ASGI application.

        As Channels' own workers do, one application instance takes every
        message of the channel; the instance wakes this runner's slots.
        """
        layer = get_channel_layer()
        if layer is None:
            return
        from gateway.asgi import application

        on_ring(self.wake)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "channel", "channel": DOORBELL_CHANNEL}
        instance = asyncio.create_task(application(scope, inbox.get, no_replies))
        try:
            while True:
                try:
                    inbox.put_nowait(await layer.receive(DOORBELL_CHANNEL))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - the sweeps go on
                    logger.warning(
                        "doorbell listener failed (%s); retrying",
                        where_raised(error),
                    )
                    await asyncio.sleep(1)
        finally:
            instance.cancel()

    async def slot(self) -> None:
        # Each slot starts with a sweep: work left by a crashed worker or a
        # lost doorbell is picked up here.
        while True:
            try:
                worked = await sync_to_async(self.work_once, thread_sensitive=False)()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker slot failed; backing off")
                await asyncio.sleep(1)
                continue
            if worked:
                continue
            await self.idle()

    def work_once(self) -> bool:
        close_old_connections()
        return process_one_conversation(self.worker_id)

    async def idle(self) -> None:
        timeout = settings.WORKER_SWEEP_SECONDS
        due_in = await sync_to_async(next_due_in, thread_sensitive=False)()
        if due_in is not None:
            timeout = max(0.05, min(timeout, due_in))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()


async def no_replies(message: dict[str, Any]) -> None:
    raise RuntimeError("nothing answers on the worker's channel")
