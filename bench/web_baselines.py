"""The API benchmark's server: the gateway plus two baselines, on one Daphne.

- /bench/raw: a raw ASGI app answering 200, the server's own limit;
- /bench/django/: a bare Django view behind the project's middleware;
- everything else: the gateway's own application.

`bench/web_api.py` serves it as `bench.web_baselines:application` with
DJANGO_SETTINGS_MODULE=bench.web_settings.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from gateway.asgi import application as gateway_application
from gateway.urls import urlpatterns as gateway_urlpatterns


def ok_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("bench/django/", ok_view), *gateway_urlpatterns]


async def raw_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/bench/raw":
        await raw_application(scope, receive, send)
    else:
        await gateway_application(scope, receive, send)
