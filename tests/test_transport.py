"""The routes ahead of Django keep Django's transport rules."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings as django_settings

from gateway.asgi import application

HOST = (b"host", b"localhost:8000")
FORWARDED_HTTPS = (b"x-forwarded-proto", b"https")


@pytest.fixture
def redirecting(settings: Any) -> Any:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    return settings


async def get(path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    communicator = HttpCommunicator(
        application, "GET", path, headers=[HOST, *headers]
    )
    answer: dict[str, Any] = await communicator.get_response(timeout=5)
    return answer


def header(answer: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in answer["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


@pytest.mark.parametrize(
    "path",
    ["/api/web/v1/messages?x=1", "/web/bubble.js", "/webhooks/facebook",
     "/apps/1/channels", "/admin/"],
)
async def test_plain_http_is_redirected_to_https(redirecting: Any, path: str) -> None:
    answer = await get(path)
    assert answer["status"] == 301
    assert header(answer, b"location") == f"https://localhost:8000{path}".encode()


@pytest.mark.django_db(transaction=True)
async def test_the_health_check_is_exempt(redirecting: Any) -> None:
    answer = await get("/healthz")
    assert answer["status"] == 200
    assert header(answer, b"strict-transport-security") is None


async def test_behind_a_tls_proxy_the_request_is_served_with_hsts(
    redirecting: Any,
) -> None:
    answer = await get("/web/bubble.css", FORWARDED_HTTPS)
    assert answer["status"] in (200, 404)
    assert header(answer, b"strict-transport-security") == b"max-age=3600"


async def test_without_the_redirect_plain_http_is_served() -> None:
    assert django_settings.SECURE_SSL_REDIRECT is False
    answer = await get("/api/web/v1/nowhere")
    assert answer["status"] == 404
    assert header(answer, b"strict-transport-security") is None


@pytest.mark.parametrize("path", ["/api/web/v1/sessions", "/healthz", "/admin/"])
async def test_a_foreign_host_is_refused(path: str) -> None:
    communicator = HttpCommunicator(
        application, "GET", path, headers=[(b"host", b"evil.example")]
    )
    answer = await communicator.get_response(timeout=5)
    assert answer["status"] == 400


async def open_socket(*headers: tuple[bytes, bytes]) -> tuple[bool, Any]:
    path = f"/app/{django_settings.PUSHER_KEY}?protocol=7"
    socket = WebsocketCommunicator(application, path, headers=list(headers))
    connected, code = await socket.connect(timeout=5)
    if connected:
        await socket.disconnect()
    return connected, code


async def test_a_plain_websocket_is_refused_when_https_is_required(
    redirecting: Any,
) -> None:
    assert await open_socket(HOST) == (False, 1008)
    connected, _ = await open_socket(HOST, FORWARDED_HTTPS)
    assert connected


async def test_a_websocket_for_a_foreign_host_is_refused() -> None:
    assert await open_socket((b"host", b"evil.example")) == (False, 1008)
