"""Share database work between concurrent requests (a group commit).

A request that must write before it answers hands its item to a
`GroupCommit` and waits. Items that arrive while a batch is in the database
thread wait for the next batch and go together: one thread hop and one
transaction for many requests instead of one each. A burst then costs a
few commits, and neither the latency of a commit nor the per-call cost of
the ORM bounds how many requests a second one process answers.

The batch function gets the items in arrival order and returns one outcome
per item: a result, or the exception that item's request should raise
(a refusal such as a rate limit). If the batch function itself raises, each
item is run again alone, so that one bad item fails only its own request.
Once a batch is committed, `after_batch` (if given) gets its outcomes on the
event loop, beside the answers: the place to ring the workers' doorbell
once for the whole batch.

A batch holds at most `max_batch` items and, when items differ in size, at
most `max_weight` of their total `weight` (an item heavier than that goes
in a batch of its own), so that one transaction stays short however large
the items are.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from channels.db import database_sync_to_async

Item = TypeVar("Item")
Result = TypeVar("Result")
Outcome = Any  # a Result, or the BaseException to raise for that item
Hop = Callable[[Callable[..., Any]], Callable[..., Coroutine[Any, Any, Any]]]
AfterBatch = Callable[[Sequence[Outcome]], Coroutine[Any, Any, None]]

logger = logging.getLogger("gateway.pipeline")


class GroupCommit(Generic[Item, Result]):
    """Run the items of concurrent requests in shared batches."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Outcome]],
        *,
        max_batch: int = 200,
        weight: Callable[[Item], int] | None = None,
        max_weight: int | None = None,
        hop: Hop = database_sync_to_async,
        after_batch: AfterBatch | None = None,
    ) -> None:
        if (weight is None) != (max_weight is None):
            raise ValueError("weight and max_weight go together")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.weight = weight
        self.max_weight = max_weight
        self.hop = hop
        self.after_batch = after_batch
        self.queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _LoopQueue[Item, Result]
        ] = weakref.WeakKeyDictionary()

    async def submit(self, item: Item) -> Result:
        """Return the item's result once its batch ran, or raise its error."""
        loop = asyncio.get_running_loop()
        queue = self.queues.get(loop)
        if queue is None:
            queue = self.queues[loop] = _LoopQueue(self)
        return await queue.submit(item)

    def batch_length(self, items: Sequence[Item]) -> int:
        """How many of these items, from the first, go in the next batch."""
        items = items[: self.max_batch]
        if self.weight is None or self.max_weight is None:
            return len(items)
        total = 0
        for count, item in enumerate(items):
            total += self.weight(item)
            if total > self.max_weight:
                # The first item goes even when it alone is too heavy.
                return max(count, 1)
        return len(items)


class _LoopQueue(Generic[Item, Result]):
    """The waiting items of one event loop; futures belong to their loop."""

    def __init__(self, owner: GroupCommit[Item, Result]) -> None:
        self.owner = owner
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.flushing: asyncio.Task[None] | None = None
        self.followers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.flushing is None:
            self.flushing = asyncio.create_task(self.flush())
        return await future

    async def flush(self) -> None:
        try:
            while self.waiting:
                length = self.owner.batch_length(
                    [item for item, _ in self.waiting[: self.owner.max_batch]]
                )
                batch = self.waiting[:length]
                del self.waiting[:length]
                await self.run(batch)
        finally:
            self.flushing = None

    async def run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in batch]
        try:
            outcomes = await self.owner.hop(self.owner.run_batch)(items)
            if len(outcomes) != len(items):
                raise RuntimeError("a batch must give one outcome per item")
        except Exception as error:  # noqa: BLE001 - find the item at fault
            if len(batch) == 1:
                settle(batch[0][1], error)
                return
            logger.warning(
                "shared batch of %d items failed (%s); running them one by one",
                len(batch), type(error).__name__,
            )
            for single in batch:
                await self.run([single])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=False):
            settle(future, outcome)
        if self.owner.after_batch is not None:
            follower = asyncio.create_task(self.owner.after_batch(outcomes))
            self.followers.add(follower)
            follower.add_done_callback(self.followers.discard)


def settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    """Wake a waiting request, unless it is gone."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
