"""Run the worker's slots in an event loop, woken by the doorbell.

Each slot works on one batch of conversations at a time (see
`gateway.pipeline.worker`). The slots' database steps run in a few threads
that keep their connections; the messages of a delivery round are sent at
the same time from a larger pool, since sending mostly waits on other
services, and a slot waiting on its sends leaves the database threads to
the others. A ring wakes one idle slot, which claims whatever is due; a
slot that finds a full batch wakes another. Slots claim and answer one at
a time, and send side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connections

from gateway.pipeline.doorbell import DOORBELL_CHANNEL, on_ring
from gateway.pipeline.worker import (
    BATCH_SIZE,
    Outcome,
    begin_batch,
    new_worker_id,
    next_due_in,
    send,
    where_raised,
)
from storage.models import Message

logger = logging.getLogger("gateway.pipeline")
# Messages one process sends at once, whatever the slots: enough for a
# Graph API that takes a few hundred milliseconds to answer.
MAX_SENDS = 32
# Threads, and so database connections, for the slots' database steps.
DATABASE_THREADS = 4
# A thread checks its database connection (as Django does once per
# request) before a step, at most this often: a busy worker's connection
# is in constant use, and a step that fails closes it.
CONNECTION_CHECK_SECONDS = 5.0
P = ParamSpec("P")
R = TypeVar("R")


class IdleSlots:
    """The slots waiting for work, woken one per ring."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[None]] = deque()
        # A ring that came while every slot was busy: the next slot to go
        # idle looks again first, as the ring's work may have come after
        # that slot's last look.
        self.missed = False

    def set(self) -> None:
        """Wake one idle slot."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.missed = True

    async def wait(self, timeout: float) -> None:
        """Wait for a ring, at most `timeout` seconds."""
        if self.missed:
            self.missed = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)


class WorkerRunner:
    """Several slots, each working on a batch of conversations at a time."""

    def __init__(self, concurrency: int | None = None) -> None:
        self.worker_id = new_worker_id()
        self.concurrency = concurrency or settings.WORKER_CONCURRENCY
        self.idle_slots = IdleSlots()
        self.claiming = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.database_threads = min(self.concurrency, DATABASE_THREADS)
        self.database = ThreadPoolExecutor(
            self.database_threads, thread_name_prefix="worker-database"
        )
        self.senders = ThreadPoolExecutor(MAX_SENDS, thread_name_prefix="worker-send")

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
            await self.shut_down()

    async def shut_down(self) -> None:
        """Close the threads' database connections, then the threads."""
        for pool, threads in (
            (self.database, self.database_threads),
            (self.senders, MAX_SENDS),
        ):
            await asyncio.to_thread(close_connections, pool, threads)
            pool.shutdown(wait=False)

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

        on_ring(self.idle_slots)
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
        # lost doorbell is picked up here. After a batch a slot looks
        # again at once: messages that came to its conversations meanwhile
        # rang while they were claimed.
        while True:
            try:
                worked = await self.work_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker slot failed; backing off")
                await asyncio.sleep(1)
                continue
            if not worked:
                await self.idle()

    async def work_once(self) -> int:
        """Do one batch of work; return how many conversations it held."""
        # One slot claims and answers at a time: what arrives meanwhile
        # waits for the next claim and shares its batch, so that under load
        # batches grow instead of every ring costing a batch of its own.
        # Sending, which waits on other services, stays side by side.
        async with self.claiming:
            batch = await self.in_database(begin_batch)(self.worker_id, BATCH_SIZE)
        if batch is None:
            return 0
        if batch.size == BATCH_SIZE:
            # More may be waiting than one batch holds.
            self.idle_slots.set()
        try:
            while batch.round:
                outcomes = await self.send_round(batch.round)
                await self.in_database(batch.settle)(outcomes)
        finally:
            if not batch.released:
                await self.in_database(batch.release)()
        return batch.size

    async def send_round(self, messages: list[Message]) -> list[Outcome]:
        sending = sync_to_async(
            checked(send), thread_sensitive=False, executor=self.senders
        )
        return list(await asyncio.gather(*(sending(m) for m in messages)))

    def in_database(
        self, step: Callable[P, R]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Run a step in a database thread of the runner."""
        return sync_to_async(
            checked(step), thread_sensitive=False, executor=self.database
        )

    async def idle(self) -> None:
        timeout = settings.WORKER_SWEEP_SECONDS
        due_in = await self.in_database(next_due_in)()
        if due_in is not None:
            timeout = max(0.05, min(timeout, due_in))
        await self.idle_slots.wait(timeout)


def close_connections(pool: ThreadPoolExecutor, threads: int) -> None:
    """Close the database connections of each of a pool's threads.

    Each thread's connection can only be closed from that thread; a barrier
    makes every thread of the pool take one of the closing tasks.
    """
    barrier = threading.Barrier(threads)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for done in [pool.submit(close) for _ in range(threads)]:
        done.result()


_checked = threading.local()


def checked(step: Callable[P, R]) -> Callable[P, R]:
    """Wrap a step so that its thread's connection is checked and healed."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        now = time.monotonic()
        if now - getattr(_checked, "at", -CONNECTION_CHECK_SECONDS) >= (
            CONNECTION_CHECK_SECONDS
        ):
            close_old_connections()
            _checked.at = now
        try:
            return step(*args, **kwargs)
        except Exception:
            # Closes the connection if the error left it unusable.
            close_old_connections()
            raise

    return run


async def no_replies(message: dict[str, Any]) -> None:
    raise RuntimeError("nothing answers on the worker's channel")
