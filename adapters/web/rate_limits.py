"""Fixed-window rate limits per chat and per client address, in the cache.

A client address is never stored. Its counter is keyed by an HMAC of the
address under a salt drawn at random for each window: the first process
to need it puts it in the shared cache, where every other process finds
it, and it expires with its window. Nothing lasting can undo the hash (the
salt derives from no setting and reaches no database), and the same
address hashes differently in the next window, so that counters cannot be
linked either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script

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


class WindowSalts:
    """The salt of each current window, memoised for the window's length."""

    def __init__(self) -> None:
        self.salts: dict[tuple[int, int], bytes] = {}
        self.lock = threading.Lock()

    def get(self, seconds: int, window: int) -> bytes:
        salt = self.salts.get((seconds, window))
        if salt is None:
            salt = shared_salt(seconds, window)
            with self.lock:
                # Windows of this length that have ended are of no more use.
                self.salts = {
                    key: value
                    for key, value in self.salts.items()
                    if key[0] != seconds or key[1] > window
                }
                self.salts[(seconds, window)] = salt
        return salt

    def clear(self) -> None:
        with self.lock:
            self.salts = {}


window_salts = WindowSalts()


def shared_salt(seconds: int, window: int) -> bytes:
    """Return the window's salt from the cache, drawing it if none is there."""
    backend = counter_cache()
    key = f"web.rl.salt.{seconds}.{window}"
    lifetime = max(1, int((window + 1) * seconds - time.time()) + 1)
    drawn = secrets.token_hex(32)
    if backend.add(key, drawn, timeout=lifetime):
        return drawn.encode()
    # Another process drew it first; it may also have expired just now.
    found = backend.get(key)
    return str(found or drawn).encode()


def address_subject(address: str | None, limit: Limit, window: int) -> str:
    """Return the cache subject of a client address within one window."""
    salt = window_salts.get(limit.seconds, window)
    digest = hmac.new(salt, (address or "-").encode(), hashlib.sha256)
    return "addr." + digest.hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """One request to count: its action, client address and chat."""

    action: str
    address: str | None
    chat: str | None = None


def check_many(requests: Sequence[Request]) -> list[ApiError | None]:
    """Count several requests at once; return each one's 429, if refused.

    Each request counts against its client address and, when given, its
    chat. All their counters go to the cache together: one round trip to
    Redis however many requests share it. Runs synchronously: the cache
    client may block.
    """
    now = time.time()
    counters = [_counters(request, now) for request in requests]
    counts = _increment(
        [(key, limit.seconds + 1) for each in counters for key, limit, _ in each]
    )
    refusals: list[ApiError | None] = []
    start = 0
    for each in counters:
        mine, start = counts[start : start + len(each)], start + len(each)
        refused = [
            (limit, window)
            for (_, limit, window), count in zip(each, mine, strict=True)
            if count > limit.requests
        ]
        refusals.append(_too_many(refused, now) if refused else None)
    return refusals


def _counters(request: Request, now: float) -> list[tuple[str, Limit, int]]:
    counters = [
        _counter(f"{request.action}.address", request.address, now, hashed=True)
    ]
    if request.chat is not None:
        counters.append(
            _counter(f"{request.action}.chat", request.chat, now, hashed=False)
        )
    return counters


def _too_many(refused: list[tuple[Limit, int]], now: float) -> ApiError:
    retry_after = max(
        max(1, int((window + 1) * limit.seconds - now) + 1)
        for limit, window in refused
    )
    return ApiError(
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
        subject = address_subject(subject, limit, window)
    return f"web.rl.{name}.{subject}.{window}", limit, window


def _increment(keys: list[tuple[str, int]]) -> list[int]:
    """Add one to each counter, creating it with its lifetime; return them."""
    backend = counter_cache()
    if isinstance(backend, RedisCache):
        # One command, and one round trip, for all of the counters.
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        counts = INCREMENTS(
            keys=[backend.make_and_validate_key(key) for key, _ in keys],
            args=[seconds for _, seconds in keys],
            client=client,
        )
        return [int(count) for count in counts]
    return [_increment_in_cache(backend, key, seconds) for key, seconds in keys]


# Add one to each key; a key that is new lives for its own number of
# seconds. Run by its digest, loaded into Redis the first time it is missing.
INCREMENTS = Script(
    None,  # type: ignore[arg-type]  # every call names its client
    b"""
local counts = {}
for index, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    if count == 1 then redis.call('EXPIRE', key, ARGV[index]) end
    counts[index] = count
end
return counts
""",
)


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
