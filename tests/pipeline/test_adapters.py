"""The adapter registry, as the worker's threads use it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.pipeline import adapters
from gateway.pipeline.adapters import ChannelAdapter, adapter_for


class SlowToLoadAdapter(ChannelAdapter):
    """An adapter whose set-up takes a while, as a network client's may."""

    channel = "slow"

    def __init__(self) -> None:
        time.sleep(0.3)


@pytest.fixture
def empty_registry(settings: Any) -> Iterator[None]:
    settings.CHANNEL_ADAPTERS = [
        "adapters.web.channel.WebAdapter",
        f"{__name__}.SlowToLoadAdapter",
        "tests.support.loopback.LoopbackAdapter",
    ]
    adapters._registry.clear()
    yield
    adapters._registry.clear()


def test_a_thread_asking_while_another_loads_finds_its_adapter(
    empty_registry: None,
) -> None:
    found: list[str] = []

    def ask(channel: str) -> None:
        try:
            found.append(adapter_for(channel).channel)
        except LookupError:
            found.append(f"no {channel}")

    first = threading.Thread(target=ask, args=("web",))
    first.start()
    # While the first thread is still loading the slow adapter.
    while first.is_alive() and not adapters._registry:
        time.sleep(0.001)
    ask("loopback")
    first.join()
    assert sorted(found) == ["loopback", "web"]


def test_an_unknown_channel_is_a_lookup_error(empty_registry: None) -> None:
    with pytest.raises(LookupError, match="no adapter for channel 'pigeon'"):
        adapter_for("pigeon")
