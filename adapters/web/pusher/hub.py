"""The process-wide side of the self-hosted Pusher server.

One hub per process (per event loop) holds the process's sockets. It joins
a channel layer group for each Pusher channel that has a subscriber here,
receives what is published to those groups on one layer channel, and hands
each event to the local subscribers. Sockets therefore need no layer channel
and no task of their own, and a publish costs one layer message per process
rather than one per subscriber. The same loop pings idle sockets.

The hub's layer channel is named with HUB_CHANNEL_PREFIX, so that settings
can give it a larger capacity than other channels: a full channel drops
what group_send sends it, without a word to the sender. The hub logs when
events reach it late, the sign that it is falling behind.
"""

import asyncio
import contextlib
import gc
import json
import logging
import time
import weakref
from typing import Any, Protocol

from channels.layers import BaseChannelLayer

from .layers import fanout_layer
from .names import group_name
from .occupancy import HASHED_MARK, Occupancy, shared_field

logger = logging.getLogger("gateway.pusher")

EVENT_MESSAGE = "pusher.event"
STOP_MESSAGE = "pusher.stop"
HUB_CHANNEL_PREFIX = "pusher-hub"
# An event older than this when it arrives was kept waiting by a busy hub.
LATE_SECONDS = 1.0
LATE_REPORT_SECONDS = 10.0
TICK_SECONDS = 1.0
SWEEP_SECONDS = 5.0
ACTIVITY_TIMEOUT = 120
PONG_TIMEOUT = 30
RETRY_SECONDS = 1.0
STOP_SECONDS = 5.0
PING_FRAME = '{"event":"pusher:ping","data":{}}'
# Python collects its youngest objects every 700 allocations. Under hundreds
# of requests a second, objects that live for milliseconds (a request, its
# task and queue) outlive that and reach the oldest generation, whose full
# collection follows every few seconds and stalls every socket for as long
# as it walks the process's objects (90 ms with 500 sockets). A younger
# generation this large lets them die young.
YOUNG_COLLECTION_THRESHOLD = 20_000


class Member(Protocol):
    """A websocket as the hub sees it."""

    socket_id: str
    last_seen: float
    pinged: bool

    async def send_frame(self, frame: str) -> None: ...

    async def close_with(self, code: int, reason: str) -> None: ...


class LocalChannel:
    """The members of one Pusher channel in this process."""

    __slots__ = ("joining", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Member] = set()
        self.joining: asyncio.Task[None] | None = None


async def send_safely(socket: Member, frame: str) -> None:
    """Send to one socket without letting its failure stop the others."""
    try:
        await socket.send_frame(frame)
    except Exception as error:  # noqa: BLE001 - one socket must not stop the rest
        logger.warning("Sending to a socket failed: %s", type(error).__name__)


def encode_event(channel: str, event: str, data: str) -> str:
    frame = {"event": event, "channel": channel, "data": data}
    return json.dumps(frame, separators=(",", ":"))


def collect_young_objects_less_often() -> None:
    """Raise the collector's youngest threshold to serve sockets smoothly."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_COLLECTION_THRESHOLD:
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


class Hub:
    def __init__(self, layer: BaseChannelLayer, loop: asyncio.AbstractEventLoop):
        self.layer = layer
        self.loop = loop
        self.layer_channel = ""
        self.sockets: set[Member] = set()
        # Keyed by group name: published messages name the group, never
        # the channel, so chat tokens in channel names stay in-process.
        self.groups: dict[str, LocalChannel] = {}
        self.leaving: dict[str, asyncio.Task[None]] = {}
        self.occupancy = Occupancy.for_layer(layer)
        self.starting: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.late_events = 0
        self.next_late_report = 0.0

    async def start(self) -> None:
        """Join the channel layer once; later calls wait for the first."""
        if self.starting is None:
            self.starting = self.loop.create_task(self._start())
        await asyncio.shield(self.starting)

    async def _start(self) -> None:
        collect_young_objects_less_often()
        self.layer_channel = await self.layer.new_channel(HUB_CHANNEL_PREFIX)
        self.tasks = [
            self.loop.create_task(self._receive_loop()),
            self.loop.create_task(self._maintain_loop()),
        ]

    async def stop(self) -> None:
        if self.tasks:
            receiver, maintainer = self.tasks
            maintainer.cancel()
            # A message ends the receive loop: channels-redis's list layer
            # may swallow a cancellation during its blocking pop. One that
            # cannot be sent, or does not arrive, leaves cancelling.
            try:
                await self.layer.send(self.layer_channel, {"type": STOP_MESSAGE})
            except Exception as error:  # noqa: BLE001 - cancelling stops it too
                logger.warning("Channel layer send failed: %s", type(error).__name__)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receiver), STOP_SECONDS)
            receiver.cancel()
            await asyncio.gather(receiver, maintainer, return_exceptions=True)
            self.tasks = []
        await self.occupancy.close()

    def add(self, socket: Member) -> None:
        self.sockets.add(socket)

    def remove(self, socket: Member, channels: set[str]) -> None:
        self.sockets.discard(socket)
        for channel in channels:
            self.leave(channel, socket)

    async def join(self, channel: str, socket: Member) -> None:
        """Add a subscriber once the process's group membership holds.

        Raise whatever the channel layer raised if it cannot be joined.
        """
        group = group_name(channel)
        while True:
            entry = self.groups.get(group)
            if entry is None:
                entry = self.groups[group] = LocalChannel(channel)
                entry.joining = self.loop.create_task(self._join_group(group, entry))
            if entry.joining is not None:
                await asyncio.shield(entry.joining)
            # The group may have been left while this socket waited.
            if self.groups.get(group) is entry:
                entry.members.add(socket)
                self.occupancy.changed(channel)
                return

    async def _join_group(self, group: str, entry: LocalChannel) -> None:
        try:
            leaving = self.leaving.get(group)
            if leaving is not None:
                await asyncio.wait([leaving])
            await self.layer.group_add(group, self.layer_channel)
        except BaseException:
            if self.groups.get(group) is entry:
                del self.groups[group]
            raise
        finally:
            entry.joining = None

    def leave(self, channel: str, socket: Member) -> None:
        """Drop a subscriber; the sweep leaves the group if none remain."""
        entry = self.groups.get(group_name(channel))
        if entry is not None and socket in entry.members:
            entry.members.discard(socket)
            self.occupancy.changed(channel)

    def count(self, channel: str) -> int:
        entry = self.groups.get(group_name(channel))
        return len(entry.members) if entry is not None else 0

    async def counts(self) -> dict[str, int]:
        """Return the subscriber count of each occupied channel, by name.

        Other processes' channels that need authorization are left out.
        """
        counts = {
            field: count
            for field, count in (await self.occupancy.others()).items()
            if not field.startswith(HASHED_MARK)
        }
        for entry in self.groups.values():
            if entry.members:
                counts[entry.name] = counts.get(entry.name, 0) + len(entry.members)
        return counts

    async def count_everywhere(self, channel: str) -> int:
        others = await self.occupancy.others()
        return self.count(channel) + others.get(shared_field(channel), 0)

    async def deliver(self, message: dict[str, Any]) -> None:
        """Send one published event to this process's subscribers."""
        entry = self.groups.get(message["group"])
        if entry is None or not entry.members:
            return
        frame = encode_event(entry.name, message["event"], message["data"])
        excluded = message.get("except") or ""
        for socket in list(entry.members):
            if socket.socket_id != excluded:
                await send_safely(socket, frame)

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.layer_channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - retry whatever the layer raised
                logger.warning("Channel layer receive failed: %s", type(error).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if message.get("type") == STOP_MESSAGE:
                return
            if message.get("type") == EVENT_MESSAGE:
                self.note_delay(message.get("sent_at"))
                await self.deliver(message)

    def note_delay(self, sent_at: object) -> None:
        """Count events that arrive late; say so, at most every few seconds."""
        if not isinstance(sent_at, float):
            return
        delay = time.time() - sent_at
        if delay < LATE_SECONDS:
            return
        self.late_events += 1
        now = time.monotonic()
        if now >= self.next_late_report:
            logger.warning(
                "Fan-out is falling behind: an event arrived %.1f s after it "
                "was published; %d late events since the last report",
                delay,
                self.late_events,
            )
            self.late_events = 0
            self.next_late_report = now + LATE_REPORT_SECONDS

    async def _maintain_loop(self) -> None:
        refresh_every = getattr(self.layer, "group_expiry", 86400) / 2
        next_sweep = time.monotonic() + SWEEP_SECONDS
        next_refresh = time.monotonic() + refresh_every
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            await self.occupancy.flush(self.count)
            if now >= next_sweep:
                next_sweep = now + SWEEP_SECONDS
                await self.check_activity(now)
                self.leave_empty_groups()
            if now >= next_refresh:
                next_refresh = now + refresh_every
                await self.refresh_groups()

    async def check_activity(self, now: float) -> None:
        """Ping sockets that went quiet; close those that never answered."""
        for socket in list(self.sockets):
            idle = now - socket.last_seen
            if idle > ACTIVITY_TIMEOUT + PONG_TIMEOUT and socket.pinged:
                self.sockets.discard(socket)
                await socket.close_with(4201, "Pong reply not received")
            elif idle > ACTIVITY_TIMEOUT and not socket.pinged:
                socket.pinged = True
                await send_safely(socket, PING_FRAME)

    def leave_empty_groups(self) -> None:
        for group, entry in list(self.groups.items()):
            if not entry.members and entry.joining is None:
                del self.groups[group]
                self.leaving[group] = self.loop.create_task(self._leave_group(group))

    async def _leave_group(self, group: str) -> None:
        try:
            await self.layer.group_discard(group, self.layer_channel)
        except Exception as error:  # noqa: BLE001 - expiry cleans up after us
            logger.warning("Channel layer discard failed: %s", type(error).__name__)
        finally:
            self.leaving.pop(group, None)

    async def refresh_groups(self) -> None:
        """Renew group memberships before the channel layer expires them."""
        for group in list(self.groups):
            try:
                await self.layer.group_add(group, self.layer_channel)
            except Exception as error:  # noqa: BLE001 - the next refresh retries
                logger.warning(
                    "Channel layer group refresh failed: %s", type(error).__name__
                )
                return


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = (
    weakref.WeakKeyDictionary()
)


def get_hub() -> Hub:
    """Return the hub of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        layer = fanout_layer()
        if layer is None:
            raise RuntimeError("The self-hosted Pusher server needs a channel layer")
        hub = _hubs[loop] = Hub(layer, loop)
    return hub


async def stop_hub() -> None:
    """Stop the running loop's hub, if any; for tests and shutdown."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()
