"""Call the web API in process, as a browser on some page would."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core.cache import cache
from django.db import connections

from adapters.web import lookups, rate_limits
from adapters.web.cors import origin_index
from gateway.asgi import http_router
from storage.models import Bot

PAGE = "https://shop.example"
# Each test calls from its own address, so that rate limits kept in a
# shared cache (Redis) do not carry over between tests or runs.
CLIENT = ["203.0.113.77", 50123]


@pytest.fixture(autouse=True)
def client_address() -> Iterator[str]:
    address = f"198.51.{random.randrange(100, 200)}.{random.randrange(1, 255)}"
    CLIENT[0] = address
    yield address


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    *,
    origin: str | None = PAGE,
    token: str | None = None,
    content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunk_size: int = 0,
) -> Answer:
    """Send one request through the gateway's HTTP router.

    With a chunk size, the body arrives in chunks of that size, as a
    request without a Content-Length streams it.
    """
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    sent = [(b"host", b"gateway.test"), (b"content-type", content_type.encode())]
    if origin is not None:
        sent.append((b"origin", origin.encode()))
    if token is not None:
        sent.append((b"authorization", f"Bearer {token}".encode()))
    sent += headers or []
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": sent,
        "client": tuple(CLIENT),
        "server": ("127.0.0.1", 80),
    }
    communicator = ApplicationCommunicator(http_router, scope)
    size = chunk_size or max(len(body), 1)
    chunks = [body[start:start + size] for start in range(0, len(body), size)]
    for number, chunk in enumerate(chunks or [b""], 1):
        await communicator.send_input({
            "type": "http.request", "body": chunk, "more_body": number < len(chunks),
        })
    start = await communicator.receive_output(5)
    content = await communicator.receive_output(5)
    await communicator.wait(5)
    return Answer(
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start["headers"]},
        content.get("body", b""),
    )


def cache_entries() -> dict[str, bytes]:
    """Every live rate-limit entry in the cache: its key and stored bytes."""
    backend = cache._cache  # type: ignore[attr-defined]
    if isinstance(backend, dict):
        # The local-memory cache drops expired entries only when it meets them.
        return {
            str(key): bytes(value)
            for key, value in list(backend.items())
            if not cache._has_expired(key)  # type: ignore[attr-defined]
        }
    client = backend.get_client()
    return {
        key.decode(): bytes(client.get(key) or b"")
        for key in client.scan_iter("*web.rl.*")
    }


async def start_session(web_key: str, origin: str | None = PAGE) -> dict[str, Any]:
    answer = await call("POST", "/api/web/v1/sessions", {"bot": web_key}, origin=origin)
    assert answer.status == 201, answer.body
    return dict(answer.json())


@pytest.fixture
def bot(transactional_db: None) -> Bot:
    return Bot.objects.create(
        slug="shop",
        name="Shop",
        allowed_origins=[PAGE],
        greeting=[{"text": "Hi!", "quick_replies": [
            {"title": "Opening hours", "payload": "hours"}]}],
        fallback=[{"text": "Sorry?"}],
    )


@pytest.fixture(autouse=True)
async def close_thread_connections() -> Any:
    """Close the database connection the API's thread hops opened."""
    yield
    # Not database_sync_to_async: its check of old connections queries
    # the database, which tests without database access may not.
    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def forget_cached_rows() -> Iterator[None]:
    """Each test starts without rows or salts cached by an earlier one."""
    lookups.forget_all()
    origin_index.forget()
    rate_limits.window_salts.clear()
    yield
    lookups.forget_all()
    origin_index.forget()
