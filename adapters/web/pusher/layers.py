"""Channel layers of the self-hosted Pusher server.

The Pusher fan-out has a layer alias of its own, FANOUT_ALIAS, so that
it can run on Redis pub/sub while the doorbell stays on the default
layer. Without the alias, the default layer carries the fan-out.

Channels' own in-memory layer keeps its ``channel_capacity`` option as
given, where every lookup expects it compiled, so any entry breaks every
send; and it looks at every channel and group for expired entries on each
send and receive, which costs a busy hub more than the delivery itself.
The one here compiles the capacities as channels-redis does (globs or
regular expressions, mapped to capacities) and looks for expired entries
at most once every CLEAN_SECONDS.
"""

from __future__ import annotations

import time
from typing import Any

from channels import layers

FANOUT_ALIAS = "pusher"
CLEAN_SECONDS = 1.0


def fanout_layer() -> layers.BaseChannelLayer | None:
    """Return the layer that carries Pusher events between processes."""
    return layers.get_channel_layer(FANOUT_ALIAS) or layers.get_channel_layer()


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    def __init__(
        self, *args: Any, channel_capacity: dict[Any, int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        self.next_clean = 0.0

    def _clean_expired(self) -> None:
        # Expiry is counted in tens of seconds: a second late is on time.
        now = time.monotonic()
        if now >= self.next_clean:
            self.next_clean = now + CLEAN_SECONDS
            super()._clean_expired()
