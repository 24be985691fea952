"""ASGI entry point: HTTP, websockets and the worker's channel.

Fast consumers answer the hot paths ahead of Django; Django the rest.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
django_application = get_asgi_application()

# Imported after Django is set up: the routes use models.
from channels.routing import (  # noqa: E402
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from django.urls import re_path  # noqa: E402

from adapters.facebook.routing import http_urlpatterns as facebook_http  # noqa: E402
from adapters.web.routing import http_urlpatterns as web_http  # noqa: E402
from adapters.web.routing import websocket_urlpatterns  # noqa: E402
from gateway.embedded import start_embedded_worker  # noqa: E402
from gateway.health import HealthConsumer  # noqa: E402
from gateway.pipeline.doorbell import DOORBELL_CHANNEL, DoorbellConsumer  # noqa: E402
from gateway.server import freeze_startup_objects  # noqa: E402
from gateway.transport import TransportGuard  # noqa: E402

http_router = URLRouter(
    [
        re_path(r"^healthz$", HealthConsumer.as_asgi()),
        *web_http,
        *facebook_http,
        re_path(r"", django_application),  # type: ignore[arg-type]
    ]
)

application = start_embedded_worker(
    ProtocolTypeRouter(
        {
            "http": TransportGuard(http_router),
            "websocket": TransportGuard(URLRouter(websocket_urlpatterns)),
            # What workers receive on the channel layer (gateway.pipeline).
            "channel": ChannelNameRouter(
                {DOORBELL_CHANNEL: DoorbellConsumer.as_asgi()}
            ),
        }
    )
)
# Everything made so far lives as long as the process (gateway.server).
freeze_startup_objects()
