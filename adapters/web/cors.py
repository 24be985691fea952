"""Which pages may call the bubble's API, and the CORS headers they get.

A bot lists the origins whose pages may embed it: ``"*"`` allows any, an
empty list allows only the gateway's own pages. A request without an
``Origin`` header does not come from a page's script (browsers send one on
every cross-origin request and on every POST), so it is not held to a
page's rules; its token or web key still is.

Origins are compared as browsers serialize them: scheme and host in lower
case, without the scheme's default port. A bot file's
``https://Shop.example:443`` is the page ``https://shop.example``.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

Headers = list[tuple[bytes, bytes]]

ALLOWED_METHODS = b"GET, POST, OPTIONS"
ALLOWED_HEADERS = b"Authorization, Content-Type"
PREFLIGHT_MAX_AGE = b"600"
# Response headers a page's script may read beyond the safelisted ones: the
# bubble waits as long as a 429 says.
EXPOSED_HEADERS = b"Retry-After"
# How long the union of all bots' origins is kept for preflight requests.
ORIGIN_INDEX_SECONDS = 10.0


DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=1024)
def canonical_origin(origin: str) -> str:
    """Return an origin as a browser writes it; anything else unchanged.

    What is not a plain http(s) origin ("*", "null", a URL with a path)
    comes back as it was, and so matches only itself.
    """
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return origin
    scheme, host = parts.scheme.lower(), parts.hostname
    extras = parts.username or parts.password or parts.path or parts.query
    if scheme not in DEFAULT_PORTS or not host or extras or parts.fragment:
        return origin
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_origin(scope: dict[str, Any]) -> str | None:
    """Return the Origin of a request, or None when the request has none."""
    origin = header(scope, b"origin")
    if not origin:
        return None
    return canonical_origin(origin.rstrip("/"))


def own_origin(scope: dict[str, Any]) -> str | None:
    """Return the gateway's origin as this request reached it, if trusted."""
    host = header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return None
    scheme = scope.get("scheme", "http")
    if header(scope, b"x-forwarded-proto") == "https":
        scheme = "https"
    return canonical_origin(f"{scheme}://{host}")


def cors_headers(origin: str | None) -> Headers:
    """Headers of an answer to an allowed origin's actual request."""
    if origin is None:
        return []
    return [
        (b"Access-Control-Allow-Origin", origin.encode("latin-1")),
        (b"Access-Control-Expose-Headers", EXPOSED_HEADERS),
        (b"Vary", b"Origin"),
    ]


def preflight_headers(origin: str) -> Headers:
    return [
        *cors_headers(origin),
        (b"Access-Control-Allow-Methods", ALLOWED_METHODS),
        (b"Access-Control-Allow-Headers", ALLOWED_HEADERS),
        (b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
    ]


class OriginIndex:
    """The origins any bot allows, for preflight requests.

    A preflight carries neither the web key nor the token, so it cannot be
    held to one bot's list; it is answered for origins some bot allows, and
    the actual request is then checked against its own bot.
    """

    def __init__(self) -> None:
        self.origins: frozenset[str] = frozenset()
        self.loaded_at = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > ORIGIN_INDEX_SECONDS

    def reload(self) -> None:
        from storage.models import Bot

        origins: set[str] = set()
        for allowed in Bot.objects.values_list("allowed_origins", flat=True):
            written = [item for item in allowed or () if isinstance(item, str)]
            origins.update(canonical_origin(item) for item in written)
        self.origins = frozenset(origins)
        self.loaded_at = time.monotonic()

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def forget(self) -> None:
        """Drop what was loaded, so that the next request reloads it."""
        self.origins = frozenset()
        self.loaded_at = float("-inf")


origin_index = OriginIndex()
