"""Client addresses as rate limits see them: behind proxies, hashed briefly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from adapters.web.addresses import client_address
from adapters.web.rate_limits import (
    Limit,
    Request,
    address_subject,
    check_many,
    counter_cache,
    window_salts,
)
from tests.web.conftest import cache_entries

ADDRESS = "203.0.113.9"
LIMIT = Limit(20, 60)


@pytest.fixture(autouse=True)
def fresh_salts() -> Iterator[None]:
    window_salts.clear()
    yield
    window_salts.clear()
    counter_cache.cache_clear()


def this_window(limit: Limit = LIMIT) -> int:
    return int(time.time() // limit.seconds)


def test_an_address_hashes_differently_in_each_window() -> None:
    window = this_window()
    subject = address_subject(ADDRESS, LIMIT, window)
    assert subject == address_subject(ADDRESS, LIMIT, window)
    assert subject != address_subject(ADDRESS, LIMIT, window + 1)
    assert subject != address_subject("203.0.113.10", LIMIT, window)
    assert ADDRESS not in subject


def test_every_process_finds_the_windows_salt_in_the_shared_cache() -> None:
    subject = address_subject(ADDRESS, LIMIT, this_window())
    # Another process has nothing memoised, and finds the same salt.
    window_salts.clear()
    assert address_subject(ADDRESS, LIMIT, this_window()) == subject


def test_the_salt_is_drawn_at_random_not_derived() -> None:
    subject = address_subject(ADDRESS, LIMIT, this_window())
    other_cache = {"default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "another-deployment",
    }}
    window_salts.clear()
    with override_settings(CACHES=other_cache):
        counter_cache.cache_clear()
        # Same settings, same SECRET_KEY, same window: another salt.
        assert address_subject(ADDRESS, LIMIT, this_window()) != subject


def test_the_salt_is_kept_only_while_its_window_lasts() -> None:
    second = Limit(20, 1)
    window = this_window(second)
    address_subject(ADDRESS, second, window)
    salts = salt_entries()
    assert salts and all(ADDRESS.encode() not in value for value in salts.values())
    time.sleep(2.1)
    assert not set(salt_entries()) & set(salts)
    # The memo holds the current window of each length only.
    address_subject(ADDRESS, second, this_window(second))
    assert [key for key in window_salts.salts if key[0] == 1] == [
        (1, this_window(second))
    ]


def test_requests_counted_together_are_refused_past_their_limit() -> None:
    limits = {"message.chat": (2, 60), "message.address": (100, 60)}
    # Chats of their own: a shared cache keeps counters between runs.
    chat, other = str(uuid.uuid4()), str(uuid.uuid4())
    with override_settings(WEB_RATE_LIMITS=limits):
        refusals = check_many(
            [Request("message", None, chat) for _ in range(3)]
            + [Request("message", None, other)]
        )
    assert [refusal is None for refusal in refusals] == [True, True, False, True]
    refusal = refusals[2]
    assert refusal is not None and refusal.status == 429
    assert refusal.retry_after is not None and 1 <= refusal.retry_after <= 61


def salt_entries() -> dict[str, bytes]:
    return {
        key: value
        for key, value in cache_entries().items()
        if ".salt.1." in key
    }


def scope(peer: str, *forwarded: str) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", chain.encode()) for chain in forwarded]
    return {"client": (peer, 443), "headers": headers}


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, ["198.51.100.7"], "10.0.0.1"),
        (1, [], "10.0.0.1"),
        (1, ["198.51.100.7"], "198.51.100.7"),
        (1, ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        (1, ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
        (2, ["6.6.6.6, 198.51.100.7, 10.1.2.3"], "198.51.100.7"),
        (3, ["198.51.100.7, 10.1.2.3"], "198.51.100.7"),
    ],
)
def test_the_address_is_taken_that_many_proxies_from_the_right(
    hops: int, forwarded: list[str], expected: str
) -> None:
    with override_settings(PROXY_HOPS=hops):
        assert client_address(scope("10.0.0.1", *forwarded)) == expected
