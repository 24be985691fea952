"""Routes of the web channel served ahead of Django's own stack."""

from django.urls import URLPattern, re_path

from adapters.web.api import MessagesConsumer, PusherAuthConsumer, SessionsConsumer
from adapters.web.assets import AssetConsumer

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
        r"^web/(?P<name>[a-z]+(?:\.min)?\.(?:js|css))$",
        AssetConsumer.as_asgi(),
    ),
]
websocket_urlpatterns: list[URLPattern] = []
