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
from django.core.cache import cache

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


def check(name: str, subject: str | None, *, address: bool = False) -> None:
    """Count one request of a kind; raise a 429 ApiError past its limit.

    `subject` is a chat's id, or with `address` the client's address.
    Runs synchronously: the cache client may block.
    """
    limit = limit_for(name)
    now = time.time()
    window = int(now // limit.seconds)
    if address:
        subject = address_subject(subject, window)
    key = f"web.rl.{name}.{subject}.{window}"
    if cache.add(key, 1, timeout=limit.seconds + 1):
        return
    try:
        count = cache.incr(key)
    except ValueError:
        # The entry expired between add() and incr(): a new window began.
        cache.add(key, 1, timeout=limit.seconds + 1)
        return
    if count > limit.requests:
        retry_after = max(1, int((window + 1) * limit.seconds - now) + 1)
        raise ApiError(
            429,
            "rate_limited",
            "Too many requests; try again later.",
            retry_after=retry_after,
        )
