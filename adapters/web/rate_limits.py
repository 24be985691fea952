"""Fixed-window rate limits per chat and per client address, in the cache.

A client address is never stored: it is only ever a cache key, and the key
is a keyed hash of the address and the current window, so that it can be
neither reversed nor linked from one window to the next, and it expires
with the window.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

from gateway.errors import ApiError


@dataclass(frozen=True)
class Limit:
    """At most `requests` in each window of `seconds`."""

    requests: int
    seconds: int


# What one client address or one chat may do per window. Override with the
# WEB_RATE_LIMITS setting, a dict of the same shape.
DEFAULT_LIMITS = {
    "session.address": Limit(20, 60),
    "auth.address": Limit(120, 60),
    "auth.chat": Limit(30, 60),
    "message.address": Limit(120, 60),
    "message.chat": Limit(30, 60),
    "history.address": Limit(120, 60),
    "history.chat": Limit(30, 60),
}


def limit_for(name: str) -> Limit:
    configured = getattr(settings, "WEB_RATE_LIMITS", {})
    limit = configured.get(name, DEFAULT_LIMITS[name])
    if isinstance(limit, Limit):
        return limit
    requests, seconds = limit
    return Limit(int(requests), int(seconds))


@lru_cache(maxsize=4)
def _hash_key(secret: str) -> bytes:
    return hashlib.sha256(f"web rate limits:{secret}".encode()).digest()


def address_subject(address: str | None, window: int) -> str:
    """Return the cache subject of a client address within one window."""
    digest = hmac.new(
        _hash_key(settings.SECRET_KEY),
        f"{window}:{address or '-'}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return "addr." + digest[:32]


def check(action: str, *, address: str | None, chat: str | None = None) -> None:
    """Count one request of an action; raise a 429 ApiError past a limit.

    The request counts against its client address and, when given, its
    chat. Runs synchronously: the cache client may block.
    """
    now = time.time()
    counters = [_counter(f"{action}.address", address, now, hashed=True)]
    if chat is not None:
        counters.append(_counter(f"{action}.chat", chat, now, hashed=False))
    counts = _increment([(key, limit.seconds + 1) for key, limit, _ in counters])
    for (_, limit, window), count in zip(counters, counts, strict=True):
        if count > limit.requests:
            retry_after = max(1, int((window + 1) * limit.seconds - now) + 1)
            raise ApiError(
                429,
                "rate_limited",
                "Too many requests; try again later.",
                retry_after=retry_after,
            )


def _counter(
    name: str, subject: str | None, now: float, *, hashed: bool
) -> tuple[str, Limit, int]:
    limit = limit_for(name)
    window = int(now // limit.seconds)
    if hashed:
        subject = address_subject(subject, window)
    return f"web.rl.{name}.{subject}.{window}", limit, window


def _increment(keys: list[tuple[str, int]]) -> list[int]:
    """Add one to each counter, creating it with its lifetime; return them."""
    backend = counter_cache()
    if isinstance(backend, RedisCache):
        # One round trip for all of a request's counters.
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        pipeline = client.pipeline(transaction=False)
        for key, seconds in keys:
            full_key = backend.make_and_validate_key(key)
            pipeline.incr(full_key)
            pipeline.expire(full_key, seconds)
        return [int(count) for count in pipeline.execute()[::2]]
    return [_increment_in_cache(backend, key, seconds) for key, seconds in keys]


@lru_cache(maxsize=1)
def counter_cache() -> BaseCache:
    """Return the process's own instance of the default cache.

    Django hands each async context its own cache instance, which for Redis
    means a new connection pool, and so a new connection, per request.
    """
    return caches.create_connection(DEFAULT_CACHE_ALIAS)


def _increment_in_cache(backend: BaseCache, key: str, seconds: int) -> int:
    if backend.add(key, 1, timeout=seconds):
        return 1
    try:
        return int(backend.incr(key))
    except ValueError:
        # The entry expired between add() and incr(): a new window began.
        backend.add(key, 1, timeout=seconds)
        return 1
