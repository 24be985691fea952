"""Transport security for the routes served ahead of Django's middleware.

Django's SecurityMiddleware and its host check protect only the requests
that reach Django. The bubble's API, the webhook, Pusher's HTTP API and
websocket, the assets and the health check are answered before that, so
this guard gives them the same rules, from the same settings:

- a Host header outside ``ALLOWED_HOSTS`` is refused with 400;
- with ``SECURE_SSL_REDIRECT``, plain HTTP is redirected to HTTPS (301),
  except for the paths of ``SECURE_REDIRECT_EXEMPT``, and a websocket
  opened over plain HTTP is refused;
- HTTPS answers carry ``Strict-Transport-Security`` when
  ``SECURE_HSTS_SECONDS`` is set.

A request is secure when it arrived over TLS or, behind a proxy that ends
TLS, when the header named by ``SECURE_PROXY_SSL_HEADER`` says so.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

logger = logging.getLogger("django.security.DisallowedHost")

Scope = dict[str, Any]
Receive = Any
Send = Any


class TransportGuard:
    """Wrap an ASGI application (HTTP and websockets) in transport rules."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.application(scope, receive, send)
            return
        if not host_allowed(scope):
            logger.warning("request refused: its Host header is not allowed")
            await refuse(scope, receive, send, 400, b"Bad Request: host not allowed")
            return
        secure = is_secure(scope)
        if not secure and settings.SECURE_SSL_REDIRECT and not exempt(scope):
            await redirect_to_https(scope, receive, send)
            return
        if secure and settings.SECURE_HSTS_SECONDS and scope["type"] == "http":
            send = with_hsts(send)
        await self.application(scope, receive, send)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def host_allowed(scope: Scope) -> bool:
    """Whether the Host header names this gateway (absent: nothing to check)."""
    host = header(scope, b"host")
    if host is None:
        return True
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def is_secure(scope: Scope) -> bool:
    if scope.get("scheme") in ("https", "wss"):
        return True
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if not proxy_header:
        return False
    name, secure_value = proxy_header
    # Django names the header as a WSGI variable: HTTP_X_FORWARDED_PROTO.
    wire_name = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
    value = header(scope, wire_name)
    return value is not None and value.split(",")[0].strip() == secure_value


def exempt(scope: Scope) -> bool:
    path = scope.get("path", "/").lstrip("/")
    return any(pattern.search(path) for pattern in exempt_patterns())


def exempt_patterns() -> tuple[re.Pattern[str], ...]:
    return _compile(tuple(settings.SECURE_REDIRECT_EXEMPT))


@lru_cache(maxsize=4)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


async def redirect_to_https(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await refuse(scope, receive, send, 403, b"")
        return
    host = settings.SECURE_SSL_HOST or header(scope, b"host") or ""
    location = f"https://{host}{scope.get('path', '/')}"
    query = scope.get("query_string", b"")
    if query:
        location += "?" + query.decode("latin-1")
    await send({
        "type": "http.response.start",
        "status": 301,
        "headers": [(b"Location", location.encode("latin-1")),
                    (b"Content-Length", b"0")],
    })
    await send({"type": "http.response.body", "body": b""})


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, body: bytes
) -> None:
    if scope["type"] == "websocket":
        # Closing instead of accepting makes the server answer 403.
        await receive()
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"Content-Type", b"text/plain"),
                    (b"Content-Length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


def hsts_value() -> bytes:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value.encode()


def with_hsts(send: Send) -> Send:
    """Add Strict-Transport-Security to an answer that lacks it."""

    async def send_with_hsts(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if b"strict-transport-security" not in names:
                headers.append((b"Strict-Transport-Security", hsts_value()))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_hsts
