"""The in-memory channel layer, with per-channel capacities that work.

Channels' own in-memory layer keeps its ``channel_capacity`` option as
given, where every lookup expects it compiled, so any entry breaks every
send. This one compiles it as channels-redis does: globs or regular
expressions, mapped to capacities.
"""

from __future__ import annotations

from typing import Any

from channels import layers


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    def __init__(
        self, *args: Any, channel_capacity: dict[Any, int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
