"""Gateway settings plus the loopback channel, for worker processes in tests."""

from gateway.settings import *  # noqa: F403
from gateway.settings import CHANNEL_ADAPTERS

CHANNEL_ADAPTERS = [*CHANNEL_ADAPTERS, "tests.support.loopback.LoopbackAdapter"]
