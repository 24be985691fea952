"""A channel layer on Redis pub/sub, for the Pusher fan-out between processes.

channels-redis's own layer keeps messages in Redis lists: each message a
hub receives costs several round trips, so a hub taking hundreds of events
a second falls behind. On pub/sub a publish is one PUBLISH, and Redis
pushes the event at once to every process that subscribed to its group;
nothing is queued in Redis, so nothing expires or needs cleaning. Delivery
is at most once, as Pusher's own: an event published while a process is
cut off from Redis never reaches that process's sockets.

Each event loop has one subscribing connection and a pool of publishing
ones. The subscribing connection comes back by itself when Redis restarts
or the network drops, subscribes again to whatever its loop still listens
to, and pings Redis when idle so that a silent peer is noticed. A channel
or group is listened to once Redis has confirmed the subscription, so a
socket told that it is subscribed misses nothing published afterwards.

Groups work for channels of the same process only: a process subscribes
for its own channels, and never learns of another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
import uuid
import weakref
from typing import Any

import msgpack
from channels.layers import BaseChannelLayer
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

logger = logging.getLogger("gateway.pusher")

CONNECT_SECONDS = 5.0
# Longer than a ping's wait: reading messages passes its own timeout.
COMMAND_SECONDS = 10.0
PING_SECONDS = 5.0
# Neither a message nor a pong for this long: the connection is dead.
SILENT_SECONDS = 15.0
RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0
CONFIRM_SECONDS = 5.0
CLOSE_SECONDS = 5.0
FULL_REPORT_SECONDS = 10.0


class Link:
    """One event loop's side of the layer: its queues and connections."""

    def __init__(self, layer: RedisPubSubLayer) -> None:
        self.layer = layer
        self.queues: dict[str, asyncio.Queue[bytes]] = {}
        # Redis channel -> the local channels that get what it carries.
        self.routes: dict[bytes, set[str]] = {}
        self.confirmations: dict[bytes, asyncio.Future[None]] = {}
        self.publisher = layer.client(retries=1)
        self.pubsub: PubSub | None = None
        self.reader: asyncio.Task[None] | None = None
        # Set to cut the wait before the next attempt to connect short.
        self.hurry = asyncio.Event()
        self.dropped = 0
        self.next_full_report = 0.0

    async def publish(self, key: bytes, message: dict[str, Any]) -> None:
        await self.publisher.publish(key, msgpack.packb(message))

    async def open(self, channel: str) -> None:
        """Make a local channel, subscribed by Redis when it answers.

        Unlike joining a group, opening a channel succeeds while Redis is
        away, after a wait: a process must start all the same.
        """
        if channel not in self.queues:
            capacity = self.layer.get_capacity(channel)
            self.queues[channel] = asyncio.Queue(maxsize=capacity)
            key = self.layer.channel_key(channel)
            self.routes.setdefault(key, set()).add(channel)
            with contextlib.suppress(RedisConnectionError):
                await self.subscribe(key)

    async def receive(self, channel: str) -> dict[str, Any]:
        await self.open(channel)
        message: dict[str, Any] = msgpack.unpackb(await self.queues[channel].get())
        return message

    async def listen(self, key: bytes, channel: str) -> None:
        """Route what Redis carries on `key` to a local channel."""
        if channel not in self.queues:
            raise RuntimeError("Only channels of this process can join groups")
        channels = self.routes.setdefault(key, set())
        if channel in channels:
            return
        subscribed = bool(channels) and key not in self.confirmations
        channels.add(channel)
        if subscribed:
            return
        try:
            await self.subscribe(key)
        except BaseException:
            self.forget(key, channel)
            raise

    async def unlisten(self, key: bytes, channel: str) -> None:
        if self.forget(key, channel) and self.pubsub is not None:
            # On failure the connection comes back without this channel.
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.unsubscribe(key)

    def forget(self, key: bytes, channel: str) -> bool:
        """Drop a route; return whether nothing listens to `key` any more."""
        channels = self.routes.get(key)
        if channels is None:
            return False
        channels.discard(channel)
        if channels:
            return False
        del self.routes[key]
        return True

    async def request(self, key: bytes) -> None:
        """Ask Redis for `key`; without a connection, the reader will."""
        if self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(self.read_forever())
        if self.pubsub is None:
            self.hurry.set()
            return
        # On failure the reader reconnects and asks for every route.
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.subscribe(key)

    async def subscribe(self, key: bytes) -> None:
        """Subscribe to `key`, and wait until Redis confirms it."""
        confirmed = self.confirmations.get(key)
        if confirmed is None:
            confirmed = asyncio.get_running_loop().create_future()
            self.confirmations[key] = confirmed
        await self.request(key)
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_SECONDS)
        except TimeoutError:
            if self.confirmations.get(key) is confirmed:
                del self.confirmations[key]
            raise RedisConnectionError("Redis did not confirm a subscription") from None

    async def read_forever(self) -> None:
        """Keep a subscribing connection, whatever happens to Redis."""
        delay = RETRY_SECONDS
        lost_at: float | None = None
        while True:
            # Cleared before, not after, an attempt: a subscription asked
            # for meanwhile must not wait for the next one.
            self.hurry.clear()
            client = self.layer.client(retries=0)
            pubsub = client.pubsub()
            try:
                await self.connect(pubsub)
                if lost_at is not None:
                    logger.warning(
                        "Redis pub/sub is back after %.1f s",
                        time.monotonic() - lost_at,
                    )
                    lost_at = None
                delay = RETRY_SECONDS
                await self.read(pubsub)
            except Exception as error:  # noqa: BLE001 - the fan-out must go on
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.warning(
                        "Redis pub/sub connection lost (%s); reconnecting",
                        type(error).__name__,
                    )
            finally:
                self.pubsub = None
                await close_quietly(pubsub, client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hurry.wait(), delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def connect(self, pubsub: PubSub) -> None:
        await pubsub.connect()
        self.pubsub = pubsub
        keys = list(self.routes)
        if keys:
            await pubsub.subscribe(*keys)
        else:
            await pubsub.ping()

    async def read(self, pubsub: PubSub) -> None:
        heard = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=PING_SECONDS)
            now = time.monotonic()
            if message is None:
                if now - heard > SILENT_SECONDS:
                    raise RedisConnectionError("Redis stopped answering")
                await pubsub.ping()
                continue
            heard = now
            if message["type"] == "message":
                self.deliver(message["channel"], message["data"])
            elif message["type"] == "subscribe":
                self.confirm(message["channel"])

    def confirm(self, key: bytes) -> None:
        confirmed = self.confirmations.pop(key, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    def deliver(self, key: bytes, data: bytes) -> None:
        for channel in self.routes.get(key, ()):
            queue = self.queues.get(channel)
            if queue is None:
                continue
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self.note_dropped()

    def note_dropped(self) -> None:
        """Count what full channels drop; say so every few seconds."""
        self.dropped += 1
        now = time.monotonic()
        if now >= self.next_full_report:
            logger.warning(
                "A channel is full: %d messages dropped since the last report",
                self.dropped,
            )
            self.dropped = 0
            self.next_full_report = now + FULL_REPORT_SECONDS

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
            self.reader = None
        for confirmed in self.confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(RedisConnectionError("The layer closed"))
        self.confirmations.clear()
        with contextlib.suppress(RedisError, OSError):
            await self.publisher.aclose()


async def close_quietly(pubsub: PubSub, client: Redis) -> None:
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        await asyncio.wait_for(pubsub.aclose(), CLOSE_SECONDS)
        await asyncio.wait_for(client.aclose(), CLOSE_SECONDS)


class RedisPubSubLayer(BaseChannelLayer):
    """Channels and groups on Redis pub/sub, at most once."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "asgi",
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
    ) -> None:
        super().__init__(capacity=capacity)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.url = url
        self.prefix = prefix
        self.links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Link] = (
            weakref.WeakKeyDictionary()
        )

    def client(self, retries: int) -> Redis:
        # One immediate retry replaces a pooled connection Redis closed.
        retry = Retry(NoBackoff(), retries)
        return Redis.from_url(
            self.url,
            retry=retry,
            socket_keepalive=True,
            socket_connect_timeout=CONNECT_SECONDS,
            socket_timeout=COMMAND_SECONDS,
        )

    def channel_key(self, channel: str) -> bytes:
        return f"{self.prefix}:channel:{channel}".encode()

    def group_key(self, group: str) -> bytes:
        return f"{self.prefix}:group:{group}".encode()

    def link(self) -> Link:
        """Return the running loop's link, made on first use."""
        loop = asyncio.get_running_loop()
        link = self.links.get(loop)
        if link is None:
            link = self.links[loop] = Link(self)
            close_with_loop(self, loop)
        return link

    async def new_channel(self, prefix: str = "specific") -> str:
        channel = f"{prefix}.{uuid.uuid4().hex}"
        await self.link().open(channel)
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self.link().publish(self.channel_key(channel), message)

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self.link().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        await self.link().listen(self.group_key(group), channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self.link().unlisten(self.group_key(group), channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.link().publish(self.group_key(group), message)

    async def flush(self) -> None:
        """Close the running loop's connections; the next use opens anew."""
        link = self.links.pop(asyncio.get_running_loop(), None)
        if link is not None:
            await link.close()

    close = flush


def close_with_loop(layer: RedisPubSubLayer, loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's link when the loop closes, as channels-redis does.

    Loops made for one call (async_to_sync in a thread) would otherwise
    leave their connections to the garbage collector.
    """
    close = loop.close

    def close_link(self: asyncio.AbstractEventLoop) -> None:
        link = layer.links.pop(loop, None)
        if link is not None and not (loop.is_running() or loop.is_closed()):
            loop.run_until_complete(link.close())
        close()

    loop.close = types.MethodType(close_link, loop)  # type: ignore[method-assign]
