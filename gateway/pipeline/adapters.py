"""The contract between the pipeline and a channel adapter, and the registry."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from storage.models import Conversation, Message


class TemporaryDeliveryError(Exception):
    """The platform may accept the message later: retry with backoff.

    `throttled` says the platform asked the sender to slow down: the wait
    does not count as a failed attempt, so a long throttle never uses up
    the attempts of the messages waiting behind it.
    """

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        *,
        throttled: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled


class PermanentDeliveryError(Exception):
    """The message can never be delivered; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChannelAdapter:
    """Base class of the adapters: one per channel, registered by name."""

    channel: str = ""

    def deliver(self, message: Message) -> str | None:
        """Send one outbound message; return the platform's id for it.

        Raise TemporaryDeliveryError or PermanentDeliveryError on failure.
        The worker delivers the messages of several conversations at once,
        each from a thread of its own.
        """
        raise NotImplementedError

    def prepare(self, messages: Sequence[Message]) -> None:
        """Read at once what delivering these messages will take (optional).

        The worker calls it just before it delivers the messages, one per
        conversation, so that an adapter may read in one query what each
        delivery would read on its own.
        """

    def bot_is_working(self, conversation: Conversation) -> None:
        """Tell the person the bot is preparing an answer (if supported)."""

    def after_work(self, conversations: Sequence[Conversation]) -> None:
        """Do what can wait until the conversations' replies went out.

        Called once a worker has answered and delivered what was due in a
        batch of conversations of this channel, whatever the outcome of the
        deliveries.
        """


_registry: dict[str, ChannelAdapter] = {}
_loading = threading.Lock()


def adapter_for(channel: str) -> ChannelAdapter:
    if not _registry:
        load_adapters()
    try:
        return _registry[channel]
    except KeyError:
        raise LookupError(f"no adapter for channel {channel!r}") from None


def load_adapters() -> None:
    """Instantiate the adapters named in settings.CHANNEL_ADAPTERS, once.

    The worker's slots run in several threads: the registry is filled
    whole before any of them sees it, or one could miss an adapter.
    """
    with _loading:
        if _registry:
            return
        loaded: dict[str, ChannelAdapter] = {}
        for path in settings.CHANNEL_ADAPTERS:
            adapter: ChannelAdapter = import_string(path)()
            loaded[adapter.channel] = adapter
        _registry.update(loaded)


@receiver(setting_changed)
def forget_adapters(**kwargs: object) -> None:
    """Adapters read settings when made: make new ones after a change."""
    with _loading:
        _registry.clear()
