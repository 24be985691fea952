"""Subscriber counts of the other processes, for the channels HTTP API.

Without Redis the gateway runs in one process and its hub knows everything.
With Redis, each process keeps its counts in a Redis hash of its own that
expires unless renewed, so a process that dies drops out within TTL_SECONDS.
Names of channels that need authorization carry chat tokens: those are
shared only as a hash, so another process can answer for such a channel
when asked by name, but cannot list it.
"""

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .names import needs_authorization

logger = logging.getLogger("gateway.pusher")

TTL_SECONDS = 30
RENEW_SECONDS = 10
HASHED_MARK = "#"


def shared_field(channel: str) -> str:
    """Name a channel in Redis; '#' never occurs in a channel name."""
    if needs_authorization(channel):
        return HASHED_MARK + hashlib.sha256(channel.encode()).hexdigest()
    return channel


class Occupancy:
    """The counts of a single process: nothing to share."""

    @staticmethod
    def for_layer(layer: Any) -> "Occupancy":
        prefix = getattr(layer, "prefix", None)
        if settings.REDIS_URL and isinstance(prefix, str):
            return SharedOccupancy(settings.REDIS_URL, prefix)
        return Occupancy()

    def changed(self, channel: str) -> None:
        """Note that the local count of a channel changed."""

    async def flush(self, count: Callable[[str], int]) -> None:
        """Publish the local counts that changed."""

    async def others(self) -> dict[str, int]:
        """Return the counts of other processes, keyed by shared field."""
        return {}

    async def close(self) -> None:
        """Release the connection, if any."""


class SharedOccupancy(Occupancy):
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.key_prefix = f"{prefix}:pusher-occupancy:"
        self.key = self.key_prefix + secrets.token_hex(8)
        self.dirty: set[str] = set()
        self.renew_at = 0.0
        self.client: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self.client is None:
            self.client = Redis.from_url(self.url, decode_responses=True)
        return self.client

    def changed(self, channel: str) -> None:
        self.dirty.add(channel)

    async def flush(self, count: Callable[[str], int]) -> None:
        now = time.monotonic()
        if not self.dirty and now < self.renew_at:
            return
        dirty, self.dirty = self.dirty, set()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in dirty:
                    subscribers = count(channel)
                    if subscribers:
                        pipe.hset(self.key, shared_field(channel), subscribers)
                    else:
                        pipe.hdel(self.key, shared_field(channel))
                pipe.expire(self.key, TTL_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as error:
            self.dirty |= dirty
            logger.warning("Sharing channel occupancy failed: %s", type(error).__name__)
            return
        self.renew_at = now + RENEW_SECONDS

    async def others(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        async for key in self.redis.scan_iter(match=self.key_prefix + "*"):
            if key == self.key:
                continue
            fields = cast(dict[str, str], await self.redis.hgetall(key))
            for field, value in fields.items():
                counts[field] = counts.get(field, 0) + int(value)
        return counts

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.client.delete(self.key)
            await self.client.aclose()
            self.client = None
