"""Routes of the web channel served ahead of Django's own stack."""

from django.urls import URLPattern, re_path

from adapters.web.api import (
    MessagesConsumer,
    NotFoundConsumer,
    PusherAuthConsumer,
    SessionsConsumer,
)
from adapters.web.assets import AssetConsumer
from adapters.web.pusher.http_api import PusherHttpApi
from adapters.web.pusher.socket import PusherSocket, UnknownPathSocket

http_urlpatterns: list[URLPattern] = [
    re_path(
        r"^api/web/v1/sessions$",
        SessionsConsumer.as_asgi(),
    ),
    re_path(
        r"^api/web/v1/pusher/auth$",
        PusherAuthConsumer.as_asgi(),
    ),
    re_path(
        r"^api/web/v1/messages$",
        MessagesConsumer.as_asgi(),
    ),
    re_path(
        r"^api/web/v1/",
        NotFoundConsumer.as_asgi(),
    ),
    re_path(
        r"^web/(?P<name>[a-z]+(?:\.min)?\.(?:js|css))$",
        AssetConsumer.as_asgi(),
    ),
    re_path(
        r"^apps/(?P<app_id>[0-9]+)/(?P<resource>events|batch_events|channels.*)$",
        PusherHttpApi.as_asgi(),
    ),
]
websocket_urlpatterns: list[URLPattern] = [
    re_path(r"^app/(?P<key>[^/]+)$", PusherSocket.as_asgi()),
    re_path(r"", UnknownPathSocket.as_asgi()),
]
