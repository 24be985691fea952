"""The address a request came from, for the per-address rate limits only.

Behind a proxy (Heroku's router, a load balancer) the socket's peer is the
proxy. Each proxy appends the address it was reached from to
``X-Forwarded-For``, so with PROXY_HOPS trusted proxies in front of the
gateway, the entry that many places from the right is the one the nearest
untrusted party cannot forge; anything to its left may be made up by the
client. (Daphne's ``--proxy-headers`` takes the leftmost entry instead,
which any client can choose.)

The address is never stored or logged: it is only ever turned into the
ephemeral hash of `adapters.web.rate_limits`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

MAX_ADDRESS = 64


def forwarded_entries(scope: dict[str, Any]) -> list[str]:
    """Return the entries of every X-Forwarded-For header, in order."""
    entries: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            text = value.decode("latin-1")
            entries += [entry.strip() for entry in text.split(",")]
    return entries


def client_address(scope: dict[str, Any]) -> str | None:
    """Return the client's address as far as the trusted proxies vouch."""
    hops = int(getattr(settings, "PROXY_HOPS", 0))
    client = scope.get("client")
    peer = str(client[0]) if client else None
    if hops <= 0:
        return peer
    entries = forwarded_entries(scope)
    if not entries:
        return peer
    # Fewer entries than proxies: the leftmost is the furthest one known.
    chosen = entries[-hops] if len(entries) >= hops else entries[0]
    return chosen[:MAX_ADDRESS] or peer
